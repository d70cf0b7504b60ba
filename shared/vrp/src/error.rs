//! The crate's one error type.
//!
//! Every message names the offending element in the caller's terms (`jobs[3].delivery`,
//! `vehicles[0].time_window`, ...), so an API can hand it to its client unchanged. The
//! feasibility checker's verdict is not an error of the caller and has its own type,
//! [`crate::Violation`].

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a problem (or its VROOM form) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The fleet is empty.
    #[error("vehicles must not be empty")]
    NoVehicles,
    /// A matrix is not square or its size disagrees with the other matrix.
    #[error("{matrix} matrix has the wrong shape: {detail}")]
    MatrixShape {
        /// `durations` or `distances`.
        matrix: String,
        /// What is wrong.
        detail: String,
    },
    /// A value that must be non-negative is negative.
    #[error("{field} must not be negative")]
    Negative {
        /// The offending element.
        field: String,
    },
    /// A location index outside the matrix.
    #[error("{field} = {index} is out of range for a {size}x{size} matrix")]
    IndexOutOfRange {
        /// The offending element.
        field: String,
        /// The index given.
        index: usize,
        /// The matrix size.
        size: usize,
    },
    /// An amount whose number of dimensions differs from the vehicles' capacities.
    #[error("{field} has {got} dimensions but vehicles have {expected}")]
    Dimensions {
        /// The offending element.
        field: String,
        /// Dimensions given.
        got: usize,
        /// Dimensions of `vehicles[0].capacity`.
        expected: usize,
    },
    /// A time window that ends before it starts.
    #[error("{field} has start {start} > end {end}")]
    TimeWindow {
        /// The offending element.
        field: String,
        /// Start given.
        start: i64,
        /// End given.
        end: i64,
    },
    /// Any other out-of-range value.
    #[error("{field} is invalid: {reason}")]
    Invalid {
        /// The offending element.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A VROOM field is missing, inconsistent or unsupported (the `vroom` mapping).
    #[error("{field}: {reason}")]
    Field {
        /// The offending element.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A VROOM output reports a failure instead of a solution.
    #[error("the output reports code {code}: {message}")]
    Failed {
        /// VROOM's `code`.
        code: u32,
        /// VROOM's `error`, or a placeholder when absent.
        message: String,
    },
}
