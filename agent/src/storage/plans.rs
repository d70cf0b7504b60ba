//! VRP plans: every successful `POST /optimize` result, numbered by a per-node sequence.
//!
//! Plans live in the [`super::PLANS`] tree keyed by their sequence number (big-endian, so
//! key order is sequence order); the last number handed out is kept under a meta key and
//! updated in the same transaction as the plan, so numbers never repeat, survive restarts
//! and have no gaps. The plan types are wire types, defined in
//! [`edgeroute_protocol::plans`].
//!
//! # Owners
//!
//! A plan belongs to the key that made it: its owner is the key's id (a prefix of the key's
//! SHA-256, never the key), kept beside the plan rather than in it, so the wire type and the
//! events the center receives stay as they were. Two trees hold it, written in the plan's
//! transaction: [`super::PLAN_OWNERS`] (sequence number to owner) answers "whose is this
//! plan", [`super::PLANS_BY_OWNER`] (owner, then sequence number) lists one owner's plans
//! without reading anyone else's. Plans stored before owners existed have none: only a
//! [`Tenant::All`] reader (the admin key, or anyone under `--no-auth`) sees them.

pub use edgeroute_protocol::plans::{NewPlan, Plan};

/// The sequence number of a plan id (`<node>-<seq>`), if it has that shape.
pub fn seq_of(id: &str) -> Option<u64> {
    id.rsplit_once('-')?.1.parse().ok()
}

/// Whose plans a reader may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tenant<'a> {
    /// Every plan: the admin key, or any caller under `--no-auth`.
    All,
    /// The plans owned by this key id only.
    Owner(&'a str),
}
