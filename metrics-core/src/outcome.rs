//! [`Outcome`]: how a measured call ended.

/// How a measured call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    /// Returned a value that is not an error.
    Ok = 0,
    /// Returned an error (`Err`, or what `error_if` said).
    Error = 1,
    /// Panicked: counts as an error, too.
    Panic = 2,
    /// An async call whose future was dropped before it completed.
    Cancelled = 3,
}

impl Outcome {
    /// Whether this outcome counts as an error.
    ///
    /// ```
    /// use fnmetrics_core::Outcome;
    /// assert!(Outcome::Panic.is_error());
    /// assert!(!Outcome::Cancelled.is_error());
    /// ```
    pub fn is_error(self) -> bool {
        matches!(self, Outcome::Error | Outcome::Panic)
    }

    /// `Error` or `Ok`: how a call that returned ended.
    ///
    /// ```
    /// use fnmetrics_core::Outcome;
    /// assert_eq!(Outcome::of(true), Outcome::Error);
    /// ```
    #[inline(always)]
    pub fn of(is_error: bool) -> Outcome {
        if is_error {
            Outcome::Error
        } else {
            Outcome::Ok
        }
    }
}
