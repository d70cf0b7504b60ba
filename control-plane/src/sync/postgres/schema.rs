//! The schema and its versioned migrations, applied at start by every replica.
//!
//! A small `schema_migrations` table rather than `refinery` or `sqlx migrate`: the center
//! has a handful of migrations, and this costs no extra crates (CI's build time) while
//! needing no advisory lock, which CockroachDB lacks: each migration runs in one
//! transaction that first claims its version with `INSERT ... ON CONFLICT DO NOTHING`,
//! so of several replicas starting at once exactly one applies it and the others wait on
//! that row, then see it claimed and skip.
//!
//! Sequence numbers are `u64` on the wire and `bigint` (signed) here: they are stored
//! offset by 2^63 ([`to_db`]), which keeps their order, so every `u64` an agent may send
//! fits and `ORDER BY seq` is numeric order.
//!
//! Names are `text COLLATE "C"`: byte order, as the sled store lists them.

use tokio_postgres::Client;

/// One migration: its version and the statements it runs.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "streams, events, nodes, plans, graphs, region state",
        sql: r#"
CREATE TABLE IF NOT EXISTS streams (
    stream text COLLATE "C" PRIMARY KEY,
    watermark bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    stream text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    body text NOT NULL,
    PRIMARY KEY (stream, seq)
);
CREATE TABLE IF NOT EXISTS nodes (
    node text COLLATE "C" PRIMARY KEY,
    record text NOT NULL,
    received_at_ms bigint NOT NULL,
    acked_seq bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS nodes_received_at ON nodes (received_at_ms);
CREATE TABLE IF NOT EXISTS plans (
    node text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    stream text COLLATE "C" NOT NULL,
    event_seq bigint NOT NULL,
    PRIMARY KEY (node, seq)
);
CREATE TABLE IF NOT EXISTS graphs (
    version text COLLATE "C" PRIMARY KEY,
    meta text NOT NULL
);
CREATE TABLE IF NOT EXISTS region_state (
    region text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    value jsonb NOT NULL,
    PRIMARY KEY (region, key)
);
"#,
    },
    Migration {
        version: 2,
        name: "rollout leases and shared metrics windows",
        sql: r#"
CREATE TABLE IF NOT EXISTS leases (
    name text COLLATE "C" PRIMARY KEY,
    holder text NOT NULL,
    expires_at_ms bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS rollout_windows (
    region text COLLATE "C" NOT NULL,
    node text COLLATE "C" NOT NULL,
    replica text COLLATE "C" NOT NULL,
    at_ms bigint NOT NULL,
    graph text,
    metrics text NOT NULL,
    PRIMARY KEY (region, at_ms, node, replica)
);
CREATE INDEX IF NOT EXISTS rollout_windows_at ON rollout_windows (at_ms);
"#,
    },
];

/// The newest schema version this build knows.
pub const LATEST: i32 = 2;

/// Offset a sequence number into `bigint`, keeping order.
pub fn to_db(seq: u64) -> i64 {
    (seq ^ (1 << 63)) as i64
}

/// The inverse of [`to_db`].
pub fn from_db(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

/// Bring the schema to [`LATEST`]. Fails on a database migrated by a newer build, which
/// this one could misread.
pub async fn migrate(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    // Two replicas creating the table at the same instant can collide in the catalog even
    // with IF NOT EXISTS; the loser's retry finds it.
    let create = "CREATE TABLE IF NOT EXISTS schema_migrations (
        version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())";
    if client.batch_execute(create).await.is_err() {
        client.batch_execute(create).await?;
    }
    for m in MIGRATIONS {
        let tx = client.transaction().await?;
        let claimed = tx
            .execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&m.version, &m.name],
            )
            .await?;
        if claimed == 1 {
            tx.batch_execute(m.sql).await?;
            tx.commit().await?;
            tracing::info!(
                version = m.version,
                name = m.name,
                "applied a store migration"
            );
        } else {
            tx.rollback().await?;
        }
    }
    Ok(())
}

/// The highest version applied, to refuse a schema from the future.
pub async fn applied(client: &Client) -> Result<i32, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?;
    row.try_get(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_keeps_order_and_round_trips() {
        let seqs = [
            0,
            1,
            2,
            1 << 62,
            (1 << 63) - 1,
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ];
        for w in seqs.windows(2) {
            assert!(to_db(w[0]) < to_db(w[1]), "{} < {}", w[0], w[1]);
        }
        for s in seqs {
            assert_eq!(from_db(to_db(s)), s);
        }
    }
}
