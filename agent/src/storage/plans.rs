//! VRP plans: every successful `POST /optimize` result, numbered by a per-node sequence.
//!
//! Plans live in the [`super::PLANS`] tree keyed by their sequence number (big-endian, so
//! key order is sequence order); the last number handed out is kept under a meta key and
//! updated in the same transaction as the plan, so numbers never repeat, survive restarts
//! and have no gaps. The plan types are wire types, defined in
//! [`edgeroute_protocol::plans`].

pub use edgeroute_protocol::plans::{NewPlan, Plan};

/// The sequence number of a plan id (`<node>-<seq>`), if it has that shape.
pub fn seq_of(id: &str) -> Option<u64> {
    id.rsplit_once('-')?.1.parse().ok()
}
