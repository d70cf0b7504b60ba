//! Buffers a thread keeps for the next request: text formatted per request (a span's JSON
//! fields, a response body) is written into one of them and copied out once at its final
//! size, instead of growing a fresh buffer from empty each time.

use std::{cell::RefCell, thread::LocalKey};

/// A buffer kept is given back empty; one grown beyond this is dropped after use, so one
/// large answer does not pin its memory to a thread for good.
pub const KEEP_AT_MOST: usize = 64 * 1024;

/// What [`with`] can keep: a growable buffer that can be emptied.
pub trait Buffer {
    /// An empty buffer with room for `capacity` bytes.
    fn with_capacity(capacity: usize) -> Self;
    /// Empties it, keeping its allocation.
    fn clear(&mut self);
    /// Its allocation, in bytes.
    fn capacity(&self) -> usize;
}

impl Buffer for String {
    fn with_capacity(capacity: usize) -> Self {
        String::with_capacity(capacity)
    }
    fn clear(&mut self) {
        String::clear(self);
    }
    fn capacity(&self) -> usize {
        String::capacity(self)
    }
}

impl Buffer for Vec<u8> {
    fn with_capacity(capacity: usize) -> Self {
        Vec::with_capacity(capacity)
    }
    fn clear(&mut self) {
        Vec::clear(self);
    }
    fn capacity(&self) -> usize {
        Vec::capacity(self)
    }
}

/// Runs `f` with the thread's buffer in `local`, emptied. Should `f` reach for the same
/// buffer again (formatting one value formats another), the inner call gets a fresh buffer
/// of `initial` bytes rather than a panic. A buffer grown beyond [`KEEP_AT_MOST`] is
/// replaced by one of `initial` bytes afterwards.
pub fn with<B: Buffer + 'static, T>(
    local: &'static LocalKey<RefCell<B>>,
    initial: usize,
    f: impl FnOnce(&mut B) -> T,
) -> T {
    local.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => {
            buffer.clear();
            let result = f(&mut buffer);
            if buffer.capacity() > KEEP_AT_MOST {
                *buffer = B::with_capacity(initial);
            }
            result
        }
        Err(_) => f(&mut B::with_capacity(initial)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static TEXT: RefCell<String> = RefCell::new(String::with_capacity(16));
    }

    #[test]
    fn reused_emptied_reentrant_and_shrunk_after_a_large_use() {
        with(&TEXT, 16, |s| s.push_str("first"));
        let (seen, inner) = with(&TEXT, 16, |s| {
            let seen = s.clone();
            s.push_str("outer");
            // The same buffer, asked for again inside: a fresh one, the outer text intact.
            let inner = with(&TEXT, 16, |t| {
                t.push_str("inner");
                t.clone()
            });
            s.push('!');
            (seen, (inner, s.clone()))
        });
        assert_eq!(seen, "", "given back empty");
        assert_eq!(inner, ("inner".to_owned(), "outer!".to_owned()));
        with(&TEXT, 16, |s| s.push_str(&"x".repeat(KEEP_AT_MOST + 1)));
        assert!(with(&TEXT, 16, |s| s.capacity()) <= KEEP_AT_MOST);
    }
}
