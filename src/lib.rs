//! placeholder
pub use fnmetrics_core::*;
pub use fnmetrics_macros::measured;
