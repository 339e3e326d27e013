//! [`Query`]: what one read of the stored history asks for (which functions, which service,
//! which time range, and for a series its step), built once and read by
//! [`PostgresReader::window`](crate::PostgresReader::window) or
//! [`PostgresReader::series`](crate::PostgresReader::series).

use fnmetrics_core::{Error, ErrorKind};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A read of the stored history: which functions, which service's calls (all, by default), which
/// time range, and for a series the step of its points.
///
/// Read it with [`PostgresReader::window`](crate::PostgresReader::window) (each function's
/// numbers over the whole range; the step is not used) or
/// [`PostgresReader::series`](crate::PostgresReader::series) (points every step). A query is
/// plain data: clone it, keep it and read it again (a [`Query::last`] range ends when it is
/// read).
///
/// Which functions, and what a read returns for them:
/// - [`Query::function`]: that one function, always one row (zeros where it has no calls).
/// - [`Query::functions`]: those functions, read together (one query a table, an index scan a
///   name); the functions with no calls are left out.
/// - [`Query::all`]: every function stored (as
///   [`PostgresReader::functions`](crate::PostgresReader::functions) lists them), read like
///   [`Query::functions`].
///
/// The methods read as a sentence (`Query::function(..).service(..).last(..).every(..)`), so
/// they are named for what they say rather than `with_*`.
///
/// ```
/// use fnmetrics::postgres::Query;
/// use std::time::Duration;
///
/// let hour = Duration::from_secs(3600);
/// let q = Query::function("app::checkout").service("api").last(24 * hour).every(hour);
/// assert_eq!(q, q.clone());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    functions: Functions,
    service: Option<String>,
    range: Range,
    step: Option<Duration>,
}

/// The functions a [`Query`] reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Functions {
    /// One function: one row, zeros where it has no calls.
    One(String),
    /// These functions: those with calls.
    Many(Vec<String>),
    /// Every function stored: those with calls.
    All,
}

/// The time range of a [`Query`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Range {
    /// Not said yet: a read fails.
    Unset,
    /// `[from, to)`.
    Between(SystemTime, SystemTime),
    /// The span before the read.
    Last(Duration),
}

impl Query {
    fn of(functions: Functions) -> Query {
        Query {
            functions,
            service: None,
            range: Range::Unset,
            step: None,
        }
    }

    /// A read of function `name`: always one row, named `name`, with zeros (a series: points
    /// with no calls) where it has none.
    ///
    /// ```
    /// use fnmetrics::postgres::Query;
    /// use std::time::Duration;
    /// let q = Query::function("app::load_user").last(Duration::from_secs(3600));
    /// ```
    pub fn function(name: impl Into<String>) -> Query {
        Query::of(Functions::One(name.into()))
    }

    /// A read of the functions `names`, together: one query a table for them all, where one
    /// [`Query::function`] a name would take a round trip each. Only those with calls are read
    /// (the others are left out); no names, no rows.
    ///
    /// ```
    /// use fnmetrics::postgres::Query;
    /// use std::time::Duration;
    /// let q = Query::functions(["app::load_user", "app::checkout"]).last(Duration::from_secs(3600));
    /// let names: Vec<String> = vec!["app::f".into()];
    /// let q = Query::functions(&names).last(Duration::from_secs(3600));
    /// ```
    pub fn functions<I, S>(names: I) -> Query
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Query::of(Functions::Many(
            names.into_iter().map(|n| n.as_ref().to_owned()).collect(),
        ))
    }

    /// A read of every function stored: the reader lists them
    /// ([`PostgresReader::functions`](crate::PostgresReader::functions), one more round trip),
    /// then reads them as [`Query::functions`] does.
    ///
    /// ```
    /// use fnmetrics::postgres::Query;
    /// use std::time::Duration;
    /// let q = Query::all().last(Duration::from_secs(86_400));
    /// ```
    pub fn all() -> Query {
        Query::of(Functions::All)
    }

    /// Only the calls of service `service` (`FlusherBuilder::service`, the binary's name by
    /// default); without it, all services together.
    ///
    /// ```
    /// use fnmetrics::postgres::Query;
    /// use std::time::Duration;
    /// let q = Query::all().service("checkout").last(Duration::from_secs(3600));
    /// ```
    pub fn service(mut self, service: impl Into<String>) -> Query {
        self.service = Some(service.into());
        self
    }

    /// The calls that ended at or after `from` and before `to`. Stored times are whole
    /// microseconds; a bound inside one is rounded up (which gives the same rows). A range that
    /// ends before it starts holds no calls.
    ///
    /// ```
    /// use fnmetrics::postgres::Query;
    /// use std::time::{Duration, SystemTime};
    /// let to = SystemTime::now();
    /// let q = Query::function("app::f").between(to - Duration::from_secs(60), to);
    /// ```
    pub fn between(mut self, from: SystemTime, to: SystemTime) -> Query {
        self.range = Range::Between(from, to);
        self
    }

    /// The calls of the `span` before the read: the range ends when the query is read (each
    /// time it is), and starts `span` earlier (at the Unix epoch for a span longer than the
    /// system's clock can go back).
    ///
    /// ```
    /// use fnmetrics::postgres::Query;
    /// use std::time::Duration;
    /// let q = Query::function("app::f").last(Duration::from_secs(30 * 86_400));
    /// ```
    pub fn last(mut self, span: Duration) -> Query {
        self.range = Range::Last(span);
        self
    }

    /// Points every `step`, for [`PostgresReader::series`](crate::PostgresReader::series)
    /// (which says how points align; a window does not use it). A zero step fails the read.
    ///
    /// ```
    /// use fnmetrics::postgres::Query;
    /// use std::time::Duration;
    /// let q = Query::function("app::f").last(Duration::from_secs(86_400)).every(Duration::from_secs(600));
    /// ```
    pub fn every(mut self, step: Duration) -> Query {
        self.step = Some(step);
        self
    }

    /// The functions read.
    pub(crate) fn names(&self) -> &Functions {
        &self.functions
    }

    /// The service whose calls are read (`None`: all).
    pub(crate) fn service_name(&self) -> Option<&str> {
        self.service.as_deref()
    }

    /// The range `[from, to)` of a read made at `now`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`] when no range was said.
    pub(crate) fn span(&self, now: SystemTime) -> Result<(SystemTime, SystemTime), Error> {
        match self.range {
            Range::Between(from, to) => Ok((from, to)),
            Range::Last(span) => Ok((now.checked_sub(span).unwrap_or(UNIX_EPOCH), now)),
            Range::Unset => Err(Error::new(
                ErrorKind::InvalidConfig,
                "a query needs a time range: .between(from, to) or .last(span)",
            )),
        }
    }

    /// The step of a series.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`] when no step was said, or a zero one.
    pub(crate) fn step(&self) -> Result<Duration, Error> {
        match self.step {
            Some(step) if step.is_zero() => Err(Error::new(
                ErrorKind::InvalidConfig,
                "a series' step must be more than zero",
            )),
            Some(step) => Ok(step),
            None => Err(Error::new(
                ErrorKind::InvalidConfig,
                "a series needs a step: .every(step)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_query_says_which_functions() {
        assert_eq!(
            Query::function("app::f").names(),
            &Functions::One("app::f".into())
        );
        let owned: Vec<String> = vec!["a".into(), "b".into()];
        let want = Functions::Many(owned.clone());
        assert_eq!(Query::functions(&owned).names(), &want);
        assert_eq!(Query::functions(owned.clone()).names(), &want);
        assert_eq!(Query::functions(["a", "b"]).names(), &want);
        assert_eq!(
            Query::functions(Vec::<String>::new()).names(),
            &Functions::Many(Vec::new())
        );
        assert_eq!(Query::all().names(), &Functions::All);
    }

    #[test]
    fn the_service_is_all_unless_said() {
        assert_eq!(Query::all().service_name(), None);
        assert_eq!(Query::all().service("api").service_name(), Some("api"));
        // The last said wins.
        let q = Query::all().service("api").service("worker");
        assert_eq!(q.service_name(), Some("worker"));
    }

    #[test]
    fn a_read_without_a_range_fails() {
        let err = Query::function("f").span(at(0)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.to_string().contains(".between"), "{err}");
    }

    #[test]
    fn between_is_as_said_and_last_ends_at_the_read() {
        let q = Query::all().between(at(10), at(20));
        assert_eq!(q.span(at(1_000)).unwrap(), (at(10), at(20)));
        // An inverted range is kept: it holds no calls.
        let q = Query::all().between(at(20), at(10));
        assert_eq!(q.span(at(1_000)).unwrap(), (at(20), at(10)));
        let q = Query::all().last(HOUR);
        assert_eq!(q.span(at(7_200)).unwrap(), (at(3_600), at(7_200)));
        assert_eq!(q.span(at(10_800)).unwrap(), (at(7_200), at(10_800)));
        // Before the epoch, as far as the clock goes; past that, from the epoch.
        assert_eq!(
            q.span(at(60)).unwrap(),
            (UNIX_EPOCH - Duration::from_secs(3_540), at(60))
        );
        let forever = Query::all().last(Duration::MAX);
        assert_eq!(forever.span(at(60)).unwrap(), (UNIX_EPOCH, at(60)));
        // The last range said wins.
        let q = Query::all().last(HOUR).between(at(1), at(2));
        assert_eq!(q.span(at(7_200)).unwrap(), (at(1), at(2)));
    }

    #[test]
    fn a_series_needs_a_step_of_more_than_zero() {
        let q = Query::function("f").last(HOUR);
        let err = q.step().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.to_string().contains(".every"), "{err}");
        let err = q.clone().every(Duration::ZERO).step().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.to_string().contains("more than zero"), "{err}");
        assert_eq!(q.every(HOUR).step().unwrap(), HOUR);
    }

    #[test]
    fn a_query_is_plain_data() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Query>();
        let q = Query::function("f").service("api").last(HOUR).every(HOUR);
        assert_eq!(q.clone(), q);
        assert_ne!(q.clone().every(2 * HOUR), q);
    }
}
