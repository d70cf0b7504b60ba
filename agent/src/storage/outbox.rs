//! The sync outbox: events waiting for the center, in a sled tree keyed by their per-stream
//! sequence number (big-endian, so key order is sequence order).
//!
//! Events are appended in the same transaction as the state change they record (a plan, a
//! graph activation), so an event exists exactly when its change does. They are deleted
//! only when the center's watermark covers them. The last number handed out and the
//! watermark live in the meta tree; depth is their difference.
//!
//! The outbox is bounded: at `max_events` waiting events, appending fails with
//! [`Error::OutboxFull`] and the change it would record is refused with it (a plan is
//! never stored without its event, nor dropped silently).

use edgeroute_protocol::sync::{Event, EventKind, RawEvent};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::{Error, Result};

/// Tree of waiting events.
pub const OUTBOX: &str = "outbox";
/// Meta key: the last event sequence number handed out.
pub const EVENT_SEQ: &[u8] = b"events.seq";
/// Meta key: the center's watermark.
pub const EVENT_ACKED: &[u8] = b"events.acked";

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

fn read_u64(bytes: Option<sled::IVec>) -> Option<u64> {
    match bytes {
        None => Some(0),
        Some(v) => <[u8; 8]>::try_from(v.as_ref()).ok().map(u64::from_be_bytes),
    }
}

/// Why an append inside a transaction was aborted.
#[derive(Debug)]
pub enum Abort {
    /// The outbox holds `max_events` already.
    Full(u64),
    /// A stored counter or value is unreadable.
    Corrupt(&'static str),
}

impl From<Abort> for Error {
    fn from(a: Abort) -> Self {
        match a {
            Abort::Full(max) => Error::OutboxFull(max),
            Abort::Corrupt(key) => Error::Corrupt { key: key.into() },
        }
    }
}

/// Append an event inside a transaction over (outbox, meta); returns its sequence number.
pub fn append(
    outbox: &TransactionalTree,
    meta: &TransactionalTree,
    kind: EventKind,
    max_events: u64,
) -> std::result::Result<u64, ConflictableTransactionError<Abort>> {
    let abort = |key| ConflictableTransactionError::Abort(Abort::Corrupt(key));
    let last = read_u64(meta.get(EVENT_SEQ)?).ok_or_else(|| abort("events.seq"))?;
    let acked = read_u64(meta.get(EVENT_ACKED)?).ok_or_else(|| abort("events.acked"))?;
    if last.saturating_sub(acked) >= max_events {
        return Err(ConflictableTransactionError::Abort(Abort::Full(max_events)));
    }
    let seq = last + 1;
    let event = Event {
        seq,
        at_ms: now_ms(),
        kind,
    };
    let bytes = serde_json::to_vec(&event).map_err(|_| abort("outbox"))?;
    meta.insert(EVENT_SEQ, &seq.to_be_bytes())?;
    outbox.insert(&seq.to_be_bytes(), bytes)?;
    Ok(seq)
}

/// Events waiting: the last sequence number handed out less the watermark.
pub fn depth(meta: &sled::Tree) -> Result<u64> {
    let corrupt = |key: &str| Error::Corrupt { key: key.into() };
    let last = read_u64(meta.get(EVENT_SEQ)?).ok_or_else(|| corrupt("events.seq"))?;
    let acked = read_u64(meta.get(EVENT_ACKED)?).ok_or_else(|| corrupt("events.acked"))?;
    Ok(last.saturating_sub(acked))
}

/// The oldest waiting events as the JSON they are stored as (a report forwards them without
/// decoding them): at most `max_events`, and no more than `max_bytes` unless a single event
/// is larger (it then goes alone, so nothing is stuck forever).
pub fn batch(outbox: &sled::Tree, max_events: usize, max_bytes: usize) -> Result<Vec<RawEvent>> {
    let mut events = Vec::new();
    let mut bytes = 0usize;
    for item in outbox.iter().values() {
        let value = item?;
        if !events.is_empty() && (events.len() >= max_events || bytes + value.len() > max_bytes) {
            break;
        }
        bytes += value.len();
        let raw = std::str::from_utf8(&value)
            .ok()
            .and_then(|json| serde_json::value::RawValue::from_string(json.to_owned()).ok())
            .ok_or_else(|| Error::Corrupt {
                key: "outbox".into(),
            })?;
        events.push(raw);
    }
    Ok(events)
}

/// Delete the events at or below the center's `watermark`, remember it, and return the
/// depth left. A watermark beyond what was handed out (a center that knows a stream this
/// database no longer has) acknowledges only what exists.
pub fn ack(outbox: &sled::Tree, meta: &sled::Tree, watermark: u64) -> Result<u64> {
    let corrupt = |key: &str| Error::Corrupt { key: key.into() };
    let last = read_u64(meta.get(EVENT_SEQ)?).ok_or_else(|| corrupt("events.seq"))?;
    let acked = read_u64(meta.get(EVENT_ACKED)?).ok_or_else(|| corrupt("events.acked"))?;
    let watermark = watermark.min(last);
    if watermark > acked {
        // The watermark first: if the deletes are cut short, the next ack removes the rest,
        // and an event already acked is never sent as if it were new (the center would only
        // ignore it anyway).
        meta.insert(EVENT_ACKED, &watermark.to_be_bytes())?;
        for key in outbox.range(..=watermark.to_be_bytes()).keys() {
            outbox.remove(key?)?;
        }
    }
    Ok(last.saturating_sub(watermark.max(acked)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sled::Transactional;

    fn open() -> (tempfile::TempDir, sled::Tree, sled::Tree) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        (
            dir,
            db.open_tree(OUTBOX).unwrap(),
            db.open_tree("meta").unwrap(),
        )
    }

    fn push(outbox: &sled::Tree, meta: &sled::Tree, max: u64) -> Result<u64> {
        (outbox, meta)
            .transaction(|(o, m)| {
                append(
                    o,
                    m,
                    EventKind::GraphFailed {
                        version: "v".into(),
                        error: "x".repeat(100),
                    },
                    max,
                )
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Abort(a) => a.into(),
                sled::transaction::TransactionError::Storage(e) => Error::Db(e),
            })
    }

    #[test]
    fn batches_acks_and_the_bound() {
        let (_dir, outbox, meta) = open();
        for expected in 1..=5 {
            assert_eq!(push(&outbox, &meta, 5).unwrap(), expected);
        }
        assert!(matches!(push(&outbox, &meta, 5), Err(Error::OutboxFull(5))));
        assert_eq!(depth(&meta).unwrap(), 5);
        let seqs = |b: Vec<RawEvent>| {
            b.iter()
                .map(|e| serde_json::from_str::<Event>(e.get()).unwrap().seq)
                .collect::<Vec<_>>()
        };
        assert_eq!(seqs(batch(&outbox, 2, 1 << 20).unwrap()), [1, 2]);
        // A byte bound smaller than one event still sends one.
        assert_eq!(seqs(batch(&outbox, 10, 10).unwrap()), [1]);
        assert_eq!(ack(&outbox, &meta, 3).unwrap(), 2);
        assert_eq!(seqs(batch(&outbox, 10, 1 << 20).unwrap()), [4, 5]);
        // An older watermark (a late answer) changes nothing.
        assert_eq!(ack(&outbox, &meta, 1).unwrap(), 2);
        assert_eq!(push(&outbox, &meta, 5).unwrap(), 6);
        // A watermark beyond what exists acknowledges what exists.
        assert_eq!(ack(&outbox, &meta, 99).unwrap(), 0);
        assert!(batch(&outbox, 10, 1 << 20).unwrap().is_empty());
        assert_eq!(push(&outbox, &meta, 5).unwrap(), 7, "numbers never repeat");
    }
}
