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
    // which would have no number on a newer stream. Up to `last` only: an event appended
    // after it was read would go out numbered beyond the batch's `last`, and the center's
    // answer would then look like another history's (a false [`Rotation::CenterAhead`]).
    let from = acked.saturating_add(1).to_be_bytes();
    for item in outbox.range(from..=last.to_be_bytes()).values() {
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
mod tests;
