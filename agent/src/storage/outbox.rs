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
//!
//! # Streams
//! The numbers on the wire belong to a *stream* ([`StreamRecord`]): an id the center keys
//! its watermark by, and a base subtracted from the stored sequence numbers, so a stream's
//! events go out numbered from 1. When the center's watermark cannot belong to this
//! database's history, the agent starts a new stream whose first number is the oldest
//! waiting event ([`ack`]): re-basing is one metadata write, however many events wait,
//! where renumbering a million stored events would not fit in one transaction. The
//! disagreements, and why each one means the old stream cannot go on:
//! - the watermark is beyond the last number handed out: the center holds events this
//!   database never wrote under that stream, so the database is an older copy (restored
//!   from a backup or a snapshot). Its next numbers are taken at the center by the lost
//!   history and would be ignored as duplicates;
//! - the watermark is below what the center acknowledged before: the center lost events it
//!   had made durable (its database was restored, wiped, or replaced by another store), and
//!   would wait forever for numbers the agent has deleted, while the outbox fills;
//! - the database was last used under another node name: a copied data directory (a cloned
//!   disk image), whose twin goes on with the same stream and numbers.

use edgeroute_protocol::sync::{Event, EventKind, RawEvent};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use super::{Error, Result};

/// Meta key: the last plan sequence number handed out (moved on by [`ack`], see there).
pub const PLAN_SEQ: &[u8] = b"plans.seq";

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

/// Meta key: the current stream ([`StreamRecord`] as JSON).
pub const STREAM: &[u8] = b"sync.stream";

/// The stream the outbox's events are numbered in on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRecord {
    /// What the center keys the stream by.
    pub id: String,
    /// The node name the stream was started under.
    pub node: String,
    /// Subtracted from a stored sequence number to give its number on the wire.
    pub base: u64,
}

/// Why the agent started a new stream (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The center's watermark is beyond anything this database wrote.
    CenterAhead,
    /// The center's watermark went back below what it had acknowledged.
    CenterBehind,
    /// The database was last used under another node name.
    NodeRenamed,
}

impl Rotation {
    /// The metric label and log value.
    pub fn label(self) -> &'static str {
        match self {
            Rotation::CenterAhead => "center_ahead",
            Rotation::CenterBehind => "center_behind",
            Rotation::NodeRenamed => "node_renamed",
        }
    }
}

/// A stream the agent just started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStream {
    /// Why.
    pub reason: Rotation,
    /// The stream given up.
    pub previous: String,
    /// The new stream's id.
    pub stream: String,
    /// Events waiting, which the new stream carries from number 1.
    pub waiting: u64,
}

/// What a report carries from the outbox ([`batch`]).
#[derive(Debug, Clone)]
pub struct Batch {
    /// The stream the events are numbered in.
    pub stream: String,
    /// The oldest waiting events, numbered for the wire.
    pub events: Vec<RawEvent>,
    /// Events waiting in all.
    pub depth: u64,
    /// The highest number on the wire handed out so far: the center cannot hold more of
    /// this stream.
    pub last: u64,
    /// A stream started on the way (the node was renamed).
    pub rotated: Option<NewStream>,
}

/// What an acknowledgement did ([`ack`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    /// Events still waiting.
    pub depth: u64,
    /// The center's watermark disagreed with this database and a new stream began.
    pub rotated: Option<NewStream>,
}

fn read_stream(meta: &sled::Tree) -> Result<Option<StreamRecord>> {
    meta.get(STREAM)?
        .map(|bytes| {
            serde_json::from_slice(&bytes).map_err(|_| Error::Corrupt {
                key: "sync.stream".into(),
            })
        })
        .transpose()
}

/// The current stream for `node`: the recorded one, or, for a database written before
/// streams had records, `legacy_id` (the node identity, which was the stream id then) from
/// base 0, so an upgraded agent goes on where it was. A record made under another node
/// name is replaced by a new stream.
pub fn stream(
    meta: &sled::Tree,
    node: &str,
    legacy_id: impl FnOnce() -> Result<String>,
) -> Result<(StreamRecord, Option<NewStream>)> {
    match read_stream(meta)? {
        Some(record) if record.node == node => Ok((record, None)),
        Some(record) => {
            let (record, new) = rotate(meta, &record, node, Rotation::NodeRenamed, None, 0)?;
            Ok((record, Some(new)))
        }
        None => {
            let record = StreamRecord {
                id: legacy_id()?,
                node: node.to_owned(),
                base: 0,
            };
            meta.insert(STREAM, encode_stream(&record)?)?;
            Ok((record, None))
        }
    }
}

fn encode_stream(record: &StreamRecord) -> Result<Vec<u8>> {
    serde_json::to_vec(record).map_err(|_| Error::Corrupt {
        key: "sync.stream".into(),
    })
}

/// Start a new stream for `node` whose number 1 is the oldest waiting event. `covered`
/// (stored numbers) counts as acknowledged first; the plan counter moves `plan_bump` on.
/// One transaction over the meta tree, which every append also writes, so an event
/// appended meanwhile lands wholly before or after the change.
fn rotate(
    meta: &sled::Tree,
    old: &StreamRecord,
    node: &str,
    reason: Rotation,
    covered: Option<u64>,
    plan_bump: u64,
) -> Result<(StreamRecord, NewStream)> {
    let id = format!("{:016x}", rand::random::<u64>());
    let (record, waiting) = meta
        .transaction(|m| {
            let abort = |key| ConflictableTransactionError::Abort(Abort::Corrupt(key));
            let last = read_u64(m.get(EVENT_SEQ)?).ok_or_else(|| abort("events.seq"))?;
            let acked = read_u64(m.get(EVENT_ACKED)?).ok_or_else(|| abort("events.acked"))?;
            let acked = covered.map_or(acked, |c| acked.max(c.min(last)));
            m.insert(EVENT_ACKED, &acked.to_be_bytes())?;
            if plan_bump > 0 {
                let plans = read_u64(m.get(PLAN_SEQ)?).ok_or_else(|| abort("plans.seq"))?;
                m.insert(PLAN_SEQ, &plans.saturating_add(plan_bump).to_be_bytes())?;
            }
            let record = StreamRecord {
                id: id.clone(),
                node: node.to_owned(),
                base: acked,
            };
            let bytes = serde_json::to_vec(&record).map_err(|_| abort("sync.stream"))?;
            m.insert(STREAM, bytes)?;
            Ok((record, last - acked))
        })
        .map_err(|e| match e {
            TransactionError::Abort(a) => Error::from(a),
            TransactionError::Storage(e) => Error::Db(e),
        })?;
    let new = NewStream {
        reason,
        previous: old.id.clone(),
        stream: record.id.clone(),
        waiting,
    };
    Ok((record, new))
}

/// The event's stored JSON with its number on the wire (`seq - base`). Events are written by
/// serde with `seq` first, so the number is replaced in place; anything else is decoded.
fn rebase(raw: &str, base: u64) -> Option<String> {
    if base == 0 {
        return Some(raw.to_owned());
    }
    if let Some(rest) = raw.strip_prefix("{\"seq\":") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let seq: u64 = rest[..digits].parse().ok()?;
        let wire = seq.checked_sub(base).filter(|s| *s > 0)?;
        return Some(format!("{{\"seq\":{wire}{}", &rest[digits..]));
    }
    let mut event: Event = serde_json::from_str(raw).ok()?;
    event.seq = event.seq.checked_sub(base).filter(|s| *s > 0)?;
    serde_json::to_string(&event).ok()
}

/// The oldest waiting events of `node`'s stream as the JSON they are stored as, numbered
/// for the wire (a report forwards them without decoding them): at most `max_events`, and
/// no more than `max_bytes` unless a single event is larger (it then goes alone, so nothing
/// is stuck forever).
pub fn batch(
    outbox: &sled::Tree,
    meta: &sled::Tree,
    node: &str,
    legacy_id: impl FnOnce() -> Result<String>,
    max_events: usize,
    max_bytes: usize,
) -> Result<Batch> {
    let (record, rotated) = stream(meta, node, legacy_id)?;
    let corrupt = |key: &str| Error::Corrupt { key: key.into() };
    let last = read_u64(meta.get(EVENT_SEQ)?).ok_or_else(|| corrupt("events.seq"))?;
    let acked = read_u64(meta.get(EVENT_ACKED)?).ok_or_else(|| corrupt("events.acked"))?;
    let mut events = Vec::new();
    let mut bytes = 0usize;
    // From the watermark on: deletes cut short by a crash leave acknowledged events behind,
    // which would have no number on a newer stream.
    let from = acked.saturating_add(1).to_be_bytes();
    for item in outbox.range(from..).values() {
        let value = item?;
        if !events.is_empty() && (events.len() >= max_events || bytes + value.len() > max_bytes) {
            break;
        }
        bytes += value.len();
        let raw = std::str::from_utf8(&value)
            .ok()
            .and_then(|json| rebase(json, record.base))
            .and_then(|json| serde_json::value::RawValue::from_string(json).ok())
            .ok_or_else(|| corrupt("outbox"))?;
        events.push(raw);
    }
    Ok(Batch {
        stream: record.id,
        events,
        depth: last.saturating_sub(acked),
        last: last.saturating_sub(record.base),
        rotated,
    })
}

/// Apply the center's `watermark` for `stream`, given the `last` number the batch it
/// answers said was handed out: delete the events it covers and return the depth left; or,
/// when the watermark cannot belong to this database's history, start a new stream (see
/// the module documentation). An answer about a stream given up since changes nothing.
pub fn ack(
    outbox: &sled::Tree,
    meta: &sled::Tree,
    stream: &str,
    last_sent: u64,
    watermark: u64,
) -> Result<Acked> {
    let corrupt = |key: &str| Error::Corrupt { key: key.into() };
    let last = read_u64(meta.get(EVENT_SEQ)?).ok_or_else(|| corrupt("events.seq"))?;
    let acked = read_u64(meta.get(EVENT_ACKED)?).ok_or_else(|| corrupt("events.acked"))?;
    let Some(record) = read_stream(meta)?.filter(|r| r.id == stream) else {
        return Ok(Acked {
            depth: last.saturating_sub(acked),
            rotated: None,
        });
    };
    let base = record.base;
    let rotation = if watermark > last_sent {
        // Whatever this database wrote up to then, the center holds; what it holds beyond
        // is another history, whose events may be plans: at most one each, so moving the
        // plan counter past them keeps plan ids unique at the center.
        Some((
            Rotation::CenterAhead,
            Some(base.saturating_add(last_sent)),
            watermark - last_sent,
        ))
    } else if watermark < acked.saturating_sub(base) {
        Some((Rotation::CenterBehind, None, 0))
    } else {
        None
    };
    if let Some((reason, covered, plan_bump)) = rotation {
        let (record, new) = rotate(meta, &record, &record.node, reason, covered, plan_bump)?;
        delete_through(outbox, record.base)?;
        return Ok(Acked {
            depth: new.waiting,
            rotated: Some(new),
        });
    }
    let watermark = base.saturating_add(watermark).min(last);
    if watermark > acked {
        // The watermark first: if the deletes are cut short, the next batch starts after
        // it anyway, and the next ack removes the rest.
        meta.insert(EVENT_ACKED, &watermark.to_be_bytes())?;
        delete_through(outbox, watermark)?;
    }
    Ok(Acked {
        depth: last.saturating_sub(watermark.max(acked)),
        rotated: None,
    })
}

fn delete_through(outbox: &sled::Tree, seq: u64) -> Result<()> {
    for key in outbox.range(..=seq.to_be_bytes()).keys() {
        outbox.remove(key?)?;
    }
    Ok(())
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

    fn legacy() -> Result<String> {
        Ok("identity".into())
    }

    /// The batch for node `n` and the wire numbers it carries.
    fn wire(outbox: &sled::Tree, meta: &sled::Tree, max: usize, bytes: usize) -> (Batch, Vec<u64>) {
        let b = batch(outbox, meta, "n", legacy, max, bytes).unwrap();
        let seqs = b
            .events
            .iter()
            .map(|e| serde_json::from_str::<Event>(e.get()).unwrap().seq)
            .collect();
        (b, seqs)
    }

    #[test]
    fn batches_acks_and_the_bound() {
        let (_dir, outbox, meta) = open();
        for expected in 1..=5 {
            assert_eq!(push(&outbox, &meta, 5).unwrap(), expected);
        }
        assert!(matches!(push(&outbox, &meta, 5), Err(Error::OutboxFull(5))));
        assert_eq!(depth(&meta).unwrap(), 5);
        let (b, seqs) = wire(&outbox, &meta, 2, 1 << 20);
        assert_eq!(seqs, [1, 2]);
        // A database without a stream record goes on in the identity's stream.
        assert_eq!((b.stream.as_str(), b.depth, b.last), ("identity", 5, 5));
        // A byte bound smaller than one event still sends one.
        assert_eq!(wire(&outbox, &meta, 10, 10).1, [1]);
        let ack = |w| ack(&outbox, &meta, "identity", 5, w).unwrap();
        assert_eq!(ack(3).depth, 2);
        assert_eq!(wire(&outbox, &meta, 10, 1 << 20).1, [4, 5]);
        // An answer about another stream changes nothing.
        assert_eq!(super::ack(&outbox, &meta, "other", 5, 5).unwrap().depth, 2);
        assert_eq!(push(&outbox, &meta, 5).unwrap(), 6);
        let b = wire(&outbox, &meta, 10, 1 << 20).0;
        let acked = super::ack(&outbox, &meta, &b.stream, b.last, 6).unwrap();
        assert_eq!((acked.depth, acked.rotated), (0, None));
        assert!(wire(&outbox, &meta, 10, 1 << 20).0.events.is_empty());
        assert_eq!(push(&outbox, &meta, 5).unwrap(), 7, "numbers never repeat");
    }

    #[test]
    fn a_center_that_lost_acknowledged_events_gets_the_waiting_ones_in_a_new_stream() {
        let (_dir, outbox, meta) = open();
        for _ in 0..5 {
            push(&outbox, &meta, 100).unwrap();
        }
        let (b, _) = wire(&outbox, &meta, 10, 1 << 20);
        assert!(
            ack(&outbox, &meta, &b.stream, b.last, 3)
                .unwrap()
                .rotated
                .is_none()
        );
        // A late answer from before the last one is no proof of loss; a watermark below the
        // one acknowledged is.
        let acked = ack(&outbox, &meta, &b.stream, b.last, 1).unwrap();
        let new = acked.rotated.expect("a new stream");
        assert_eq!(new.reason, Rotation::CenterBehind);
        assert_eq!(
            (new.previous.as_str(), new.waiting, acked.depth),
            ("identity", 2, 2)
        );
        let (b, seqs) = wire(&outbox, &meta, 10, 1 << 20);
        assert_eq!(b.stream, new.stream);
        assert_eq!(seqs, [1, 2], "events 4 and 5, numbered from 1");
        assert_eq!(b.last, 2);
        // The new stream acknowledges normally, in its own numbers.
        assert_eq!(ack(&outbox, &meta, &b.stream, b.last, 1).unwrap().depth, 1);
        assert_eq!(push(&outbox, &meta, 100).unwrap(), 6);
        let (b, seqs) = wire(&outbox, &meta, 10, 1 << 20);
        assert_eq!(seqs, [2, 3]);
        let acked = ack(&outbox, &meta, &b.stream, b.last, 3).unwrap();
        assert_eq!((acked.depth, acked.rotated), (0, None));
    }

    #[test]
    fn a_restored_database_starts_a_new_stream_and_skips_the_lost_plan_numbers() {
        let (_dir, outbox, meta) = open();
        meta.insert(PLAN_SEQ, &4u64.to_be_bytes()).unwrap();
        for _ in 0..3 {
            push(&outbox, &meta, 100).unwrap();
        }
        let (b, _) = wire(&outbox, &meta, 10, 1 << 20);
        // An event appended after the batch was read was never sent.
        push(&outbox, &meta, 100).unwrap();
        // The center holds 10 events of this stream: 7 of a history this copy lacks.
        let acked = ack(&outbox, &meta, &b.stream, b.last, 10).unwrap();
        let new = acked.rotated.expect("a new stream");
        assert_eq!(
            (new.reason, new.waiting, acked.depth),
            (Rotation::CenterAhead, 1, 1)
        );
        let plans = u64::from_be_bytes(
            meta.get(PLAN_SEQ)
                .unwrap()
                .unwrap()
                .as_ref()
                .try_into()
                .unwrap(),
        );
        assert_eq!(
            plans, 11,
            "past the 7 events (so at most 7 plans) of the lost history"
        );
        let (b, seqs) = wire(&outbox, &meta, 10, 1 << 20);
        assert_eq!((seqs, b.last), (vec![1], 1), "only the unsent event waits");
        assert_eq!(outbox.len(), 1, "what the center holds is deleted");
    }

    #[test]
    fn a_database_copied_to_another_node_starts_a_new_stream() {
        let (_dir, outbox, meta) = open();
        for _ in 0..3 {
            push(&outbox, &meta, 100).unwrap();
        }
        let (b, _) = wire(&outbox, &meta, 10, 1 << 20);
        ack(&outbox, &meta, &b.stream, b.last, 2).unwrap();
        let other = batch(&outbox, &meta, "m", legacy, 10, 1 << 20).unwrap();
        let new = other.rotated.expect("a new stream");
        assert_eq!((new.reason, new.waiting), (Rotation::NodeRenamed, 1));
        assert_ne!(other.stream, b.stream);
        assert_eq!(other.last, 1);
        // Back under the first name: yet another stream, never the old one.
        let back = batch(&outbox, &meta, "n", legacy, 10, 1 << 20).unwrap();
        assert!(back.rotated.is_some());
        assert_ne!(back.stream, b.stream);
        assert_ne!(back.stream, other.stream);
    }

    #[test]
    fn events_renumber_whatever_their_json_looks_like() {
        assert_eq!(
            rebase(r#"{"seq":12,"at_ms":1}"#, 0).unwrap(),
            r#"{"seq":12,"at_ms":1}"#
        );
        let stored = serde_json::to_string(&Event {
            seq: 12,
            at_ms: 1,
            kind: EventKind::GraphFailed {
                version: "v".into(),
                error: "e".into(),
            },
        })
        .unwrap();
        let moved: Event = serde_json::from_str(&rebase(&stored, 10).unwrap()).unwrap();
        assert_eq!((moved.seq, moved.at_ms), (2, 1));
        // Fields in another order are decoded rather than patched.
        let reordered = r#"{"at_ms":1,"seq":12,"type":"graph_failed","version":"v","error":"e"}"#;
        let moved = rebase(reordered, 10).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&moved).unwrap().seq, 2);
        // A number at or below the base has none on the wire.
        assert!(rebase(&stored, 12).is_none());
        assert!(rebase("not json", 3).is_none());
    }
}
