//! The outbox's numbering, bound and stream rotations.

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

/// Plans are stored while a report is being built: a batch must not carry an event appended
/// after it read the last number, or the center's answer to it exceeds that number and
/// looks like another database's history (a new stream, and a skipped plan number).
#[test]
fn events_appended_while_a_batch_is_read_wait_for_the_next_batch() {
    let (_dir, outbox, meta) = open();
    std::thread::scope(|scope| {
        let appender = scope.spawn(|| {
            for _ in 0..20_000 {
                push(&outbox, &meta, u64::MAX).unwrap();
            }
        });
        let mut rounds = 0;
        // Until the appender ends, however it ends (a panic is re-raised by the scope).
        while !appender.is_finished() || depth(&meta).unwrap() > 0 {
            let (b, seqs) = wire(&outbox, &meta, 1_000, 1 << 20);
            if let Some(&highest) = seqs.last() {
                assert!(
                    highest <= b.last,
                    "round {rounds}: the batch carries {highest} but says {} was the last",
                    b.last
                );
            }
            // The center acknowledges what it was sent, as a center that holds it all does.
            if let Some(&watermark) = seqs.last() {
                let acked = ack(&outbox, &meta, &b.stream, b.last, watermark).unwrap();
                assert_eq!(acked.rotated, None, "round {rounds}");
            }
            rounds += 1;
        }
    });
    assert_eq!(depth(&meta).unwrap(), 0);
}
