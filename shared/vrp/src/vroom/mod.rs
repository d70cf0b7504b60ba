//! VROOM's JSON shapes ([`edgeroute_protocol::vroom`]) to and from the model, both
//! directions in one place so each is tested against the other.
//!
//! - [`input`]: a VROOM input to a [`Problem`](crate::Problem): [`Places`] resolves
//!   locations to matrix indices, [`custom_matrices`] converts given matrices,
//!   [`to_problem`] builds and validates the problem. A server computes the matrices of
//!   coordinate inputs itself, from [`Places::points`].
//! - [`output`]: a solved problem as VROOM output ([`to_output`]).
//! - [`inverse`]: what a client of such a server needs: a problem as VROOM input
//!   ([`to_input`]) and the answer back as a [`Solution`](crate::Solution)
//!   ([`to_solution`]).
//!
//! The round trip `to_input` → `to_problem` → solve → `to_output` → `to_solution` gives
//! back the problem and the solution exactly; the tests check it on these functions, the
//! ones the agent and the benchmarks call.

pub mod input;
pub mod inverse;
pub mod output;

pub use input::{Places, custom_matrices, to_problem};
pub use inverse::{to_input, to_solution};
pub use output::{Times, to_output};

#[cfg(test)]
mod tests;
