//! fnmetrics
pub use fnmetrics_core::*;
