//! Bodies for the error responses hyper writes by itself.
//!
//! A request hyper cannot parse (a URI over 65,534 bytes: 414; a head over its buffer: 431;
//! bad bytes in the request line, a bad `Content-Length`: 400) never reaches the
//! application: hyper answers with an empty body and closes. Clients of an API that promises
//! JSON errors then get nothing to parse. [`ErrorBodies`] wraps the connection's stream and
//! replaces exactly those responses (one of these three statuses, `content-length: 0`, head
//! only) with the body the server's [`ProtocolErrorBody`] renders. The application never
//! sends such a response itself when it answers every error with a body.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Renders the JSON body of a response hyper refused a request with (400, 414 or 431).
pub type ProtocolErrorBody = fn(u16) -> String;

/// A connection's stream whose protocol-error responses get a body.
pub(crate) struct ErrorBodies<I> {
    inner: I,
    render: Option<ProtocolErrorBody>,
    /// Replacement bytes still to write.
    pending: Vec<u8>,
    written: usize,
}

impl<I> ErrorBodies<I> {
    pub(crate) fn new(inner: I, render: Option<ProtocolErrorBody>) -> Self {
        Self {
            inner,
            render,
            pending: Vec::new(),
            written: 0,
        }
    }
}

/// The replacement for `head` if it is one of hyper's own error responses.
fn replacement(head: &[u8], render: ProtocolErrorBody) -> Option<Vec<u8>> {
    let status: u16 = match head.get(..13)? {
        b"HTTP/1.1 400 " => 400,
        b"HTTP/1.1 414 " => 414,
        b"HTTP/1.1 431 " => 431,
        _ => return None,
    };
    let text = std::str::from_utf8(head).ok()?;
    let (status_line, rest) = text.strip_suffix("\r\n\r\n")?.split_once("\r\n")?;
    if !rest
        .split("\r\n")
        .any(|h| h.eq_ignore_ascii_case("content-length: 0"))
    {
        return None;
    }
    let body = render(status);
    let mut out = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for header in rest.split("\r\n") {
        if header
            .get(..5)
            .is_some_and(|name| name.eq_ignore_ascii_case("date:"))
        {
            out.push_str(header);
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    out.push_str(&body);
    Some(out.into_bytes())
}

impl<I: AsyncWrite + Unpin> ErrorBodies<I> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for ErrorBodies<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ErrorBodies<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(render) = this.render
            && let Some(bytes) = replacement(buf, render)
        {
            this.pending = bytes;
            // The bytes hyper gave are consumed: their replacement goes out now or on flush.
            let _ = this.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    // Not vectored, so that hyper hands over a response head in one buffer.
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(status: u16) -> String {
        format!("{{\"status\":{status}}}")
    }

    #[test]
    fn only_hypers_own_bodiless_errors_are_replaced() {
        let head = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 03:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(replacement(head, render).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{out}");
        assert!(out.contains("content-length: 14\r\n"), "{out}");
        assert!(out.contains("date: Thu, 03 Dec 2026"), "{out}");
        assert!(out.ends_with("\r\n\r\n{\"status\":414}"), "{out}");
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 20\r\n\r\n";
        assert!(replacement(with_body, render).is_none());
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(replacement(ok, render).is_none());
    }
}
