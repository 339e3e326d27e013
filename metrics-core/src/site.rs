//! What `#[measured]` expands to: a static [`Site`] per function and a [`Guard`] per call.

use crate::outcome::Outcome;
use crate::registry;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::*};

mod future;
mod naming;
mod sample;

pub use future::{instrument, Instrumented};
pub use sample::MAX_SAMPLE;

/// Whether this call is one of the about one in `n` that a sample keeps (`EntryMode::Sample`).
pub(crate) fn sample_one_in(n: u32) -> bool {
    n <= 1 || sample::timed(sample::units(n))
}

/// Times about one call in `every` of each measured function that has no `sample` of its own
/// (`#[measured(sample = N)]`), from now on, in the whole process; `1` (the default) times every
/// call. Every call, error, panic and cancellation is still counted exactly; the mean,
/// quantiles, min and max are over the timed calls ([`Snapshot::timed`](crate::Snapshot)), and
/// only timed calls make per-call entries. For an operator who needs the cost of measuring
/// down without a rebuild. `every` is capped at [`MAX_SAMPLE`].
///
/// ```
/// #[fnmetrics::measured(name = "doc::default_sample")]
/// fn parse() {}
/// fnmetrics::set_default_sample(100);
/// for _ in 0..10_000 {
///     parse();
/// }
/// fnmetrics::set_default_sample(1);
/// let m = fnmetrics::get("doc::default_sample").unwrap();
/// assert_eq!(m.calls, 10_000);
/// assert!(m.timed > 0 && m.timed < 1_000, "{}", m.timed);
/// ```
pub fn set_default_sample(every: u32) {
    sample::set_default(every);
}

/// The run-time default set by [`set_default_sample`] (1: every call is timed).
///
/// ```
/// assert_eq!(fnmetrics::default_sample(), 1);
/// ```
pub fn default_sample() -> u32 {
    sample::get_default()
}

/// Turns recording on or off for the whole process, at run time; on by default.
///
/// While off, measured functions still run their one relaxed load of this flag per call, but
/// record nothing: no call, error, panic or cancellation, no time, no per-call entry. Calls that
/// finish while recording is off are not recorded, whenever they started. For no cost at all,
/// build with the `disabled` feature of `fnmetrics`, which makes `#[measured]` leave the function
/// as it was written.
///
/// ```
/// #[fnmetrics::measured(name = "doc::set_enabled")]
/// fn work() {}
/// fnmetrics::set_enabled(false);
/// work();
/// fnmetrics::set_enabled(true);
/// work();
/// assert_eq!(fnmetrics::get("doc::set_enabled").unwrap().calls, 1);
/// ```
pub fn set_enabled(enabled: bool) {
    crate::clock::set_recording(enabled);
}

/// Whether calls are recorded: `false` after `set_enabled(false)`.
///
/// ```
/// assert!(fnmetrics::is_enabled());
/// ```
pub fn is_enabled() -> bool {
    crate::clock::recording()
}

/// The static record of one measured function: its name and, once registered, its metric id.
///
/// The macro makes one per function (`static`), so registration happens once, on the first call.
///
/// ```
/// use fnmetrics_core::__private::{Guard, Site};
/// static SITE: Site = Site::new("doc::site::by_hand");
/// let guard = Guard::start(&SITE);
/// guard.finish(false);
/// assert_eq!(fnmetrics_core::get("doc::site::by_hand").unwrap().calls, 1);
/// ```
#[derive(Debug)]
pub struct Site {
    name: SiteName,
    /// 0 while unregistered, else metric id + 1.
    id: AtomicU32,
    /// For a method site: the `Self` type-name function `id` belongs to. A trait's default
    /// method has one site for every implementing type, so other types are looked up in `more`.
    ty: AtomicUsize,
    more: [(AtomicUsize, AtomicU32); MORE_TYPES],
}

/// `Self` types a method site remembers besides its first; past that, calls look the name up in
/// the registry (correct, only slower).
const MORE_TYPES: usize = 8;

#[derive(Debug)]
enum SiteName {
    Fixed(&'static str),
    /// Named after where the function is, found on the first call (see [`Site::path`]).
    Path {
        /// The compiler's path of an item declared in the function's body.
        item: fn() -> &'static str,
        /// `module_path!()` where the function is.
        module: &'static str,
        /// The function's name.
        function: &'static str,
    },
}

impl Site {
    /// A site with a fixed name.
    ///
    /// ```
    /// static SITE: fnmetrics_core::__private::Site = fnmetrics_core::__private::Site::new("f");
    /// ```
    pub const fn new(name: &'static str) -> Site {
        Site::with_name(SiteName::Fixed(name))
    }

    /// A site named after where function `function` is: `item` returns the compiler's path of
    /// an item declared in the function's body (`std::any::type_name_of_val` of a nested fn),
    /// `module` is `module_path!()` at the function. The path is turned into a name once, on the
    /// first call; how is documented on `#[measured]` ("Names").
    ///
    /// ```
    /// use fnmetrics_core::__private::{Guard, Site};
    /// fn load() {
    ///     fn here() -> &'static str {
    ///         std::any::type_name_of_val(&here)
    ///     }
    ///     static SITE: Site = Site::path(here, module_path!(), "load");
    ///     Guard::start(&SITE).finish(false);
    /// }
    /// fn main() {
    ///     load();
    ///     assert!(fnmetrics_core::get(concat!(module_path!(), "::load")).is_some());
    /// }
    /// ```
    pub const fn path(
        item: fn() -> &'static str,
        module: &'static str,
        function: &'static str,
    ) -> Site {
        Site::with_name(SiteName::Path {
            item,
            module,
            function,
        })
    }

    const fn with_name(name: SiteName) -> Site {
        Site {
            name,
            id: AtomicU32::new(0),
            ty: AtomicUsize::new(0),
            more: [const { (AtomicUsize::new(0), AtomicU32::new(0)) }; MORE_TYPES],
        }
    }

    /// The name of this site's function, called with `Self` type `self_type` if a method.
    fn name(&self, self_type: Option<&str>) -> std::borrow::Cow<'static, str> {
        match self.name {
            SiteName::Fixed(name) => name.into(),
            SiteName::Path {
                item,
                module,
                function,
            } => naming::function_name(item(), module, function, self_type).into(),
        }
    }

    #[inline(always)]
    fn id(&'static self) -> u32 {
        match self.id.load(Relaxed) {
            0 => self.register(),
            v => v - 1,
        }
    }

    #[cold]
    #[inline(never)]
    fn register(&'static self) -> u32 {
        let id = registry::register(&self.name(None));
        // Racing first calls on two threads both register; `register` returns the same id.
        self.id.store(id + 1, Relaxed);
        id
    }

    #[inline(always)]
    fn method_id(&'static self, self_type: fn() -> &'static str) -> u32 {
        let v = self.id.load(Acquire);
        if v != 0 && self.ty.load(Relaxed) == self_type as usize {
            return v - 1;
        }
        self.method_id_slow(self_type)
    }

    #[cold]
    #[inline(never)]
    fn method_id_slow(&'static self, self_type: fn() -> &'static str) -> u32 {
        let key = self_type as usize;
        for (ty, id) in &self.more {
            if ty.load(Acquire) == key
                && let v @ 1.. = id.load(Acquire)
            {
                return v - 1;
            }
        }
        let id = registry::register(&self.name(Some(self_type())));
        if self.ty.compare_exchange(0, key, Relaxed, Relaxed).is_ok() {
            self.id.store(id + 1, Release);
            return id;
        }
        for (ty, slot) in &self.more {
            match ty.compare_exchange(0, key, AcqRel, Acquire) {
                Ok(_) => {
                    slot.store(id + 1, Release);
                    break;
                }
                Err(k) if k == key => break,
                Err(_) => {}
            }
        }
        id
    }
}

/// Times one call; [`Guard::finish`] records it, and dropping it unfinished records a panic (while
/// unwinding) or a cancelled future.
///
/// ```
/// use fnmetrics_core::__private::{Guard, Site};
/// static SITE: Site = Site::new("doc::guard::cancel");
/// drop(Guard::start(&SITE));
/// assert_eq!(fnmetrics_core::get("doc::guard::cancel").unwrap().cancelled, 1);
/// ```
#[derive(Debug)]
#[must_use = "a guard records the call when finished or dropped"]
pub struct Guard {
    /// The metric id (low 32 bits) and how many calls a timed call stands for (high 32 bits:
    /// `N` of a sampling function, else 1; 0 when this call is not timed). One word, so that
    /// the guard is a pair of scalars, passed and kept in registers: as three fields it went
    /// through the stack, and the 16-byte reload of three narrower stores cost the call about
    /// 10 ns (a failed store-to-load forward) in the plain-loop bench.
    tag: u64,
    start: u64,
}

impl Guard {
    /// Starts timing a call of `site` (or, while [`set_default_sample`] samples, counting it
    /// and timing about one in N).
    ///
    /// ```
    /// # use fnmetrics_core::__private::{Guard, Site};
    /// # static SITE: Site = Site::new("doc::guard::start");
    /// Guard::start(&SITE).finish(true);
    /// ```
    #[inline(always)]
    pub fn start(site: &'static Site) -> Guard {
        let id = site.id();
        if sample::default_on() {
            return Guard::start_by_default(id);
        }
        Guard::timed(id, 1)
    }

    /// A call of a site without a `sample` of its own while the run-time default samples.
    #[cold]
    #[inline(never)]
    fn start_by_default(id: u32) -> Guard {
        match sample::default() {
            None => Guard::timed(id, 1),
            Some((every, units)) => Guard::maybe_timed(id, every, units),
        }
    }

    /// Starts a call of a site that times about one call in `every` (`#[measured(sample =
    /// N)]`, a constant); every call is counted.
    ///
    /// ```
    /// # use fnmetrics_core::__private::{Guard, Site};
    /// # static SITE: Site = Site::new("doc::guard::start_sampled");
    /// for _ in 0..1000 {
    ///     Guard::start_sampled(&SITE, 64).finish(false);
    /// }
    /// let m = fnmetrics_core::get("doc::guard::start_sampled").unwrap();
    /// assert_eq!(m.calls, 1000);
    /// assert!(m.timed < 100);
    /// ```
    #[inline(always)]
    pub fn start_sampled(site: &'static Site, every: u32) -> Guard {
        Guard::maybe_timed(site.id(), every, sample::units(every))
    }

    #[inline(always)]
    fn timed(id: u32, weight: u32) -> Guard {
        Guard {
            tag: Guard::tag(id, weight),
            start: crate::clock::raw_now(),
        }
    }

    #[inline(always)]
    const fn tag(id: u32, weight: u32) -> u64 {
        id as u64 | (weight as u64) << 32
    }

    #[inline(always)]
    fn id(&self) -> u32 {
        self.tag as u32
    }

    #[inline(always)]
    fn weight(&self) -> u32 {
        (self.tag >> 32) as u32
    }

    #[inline(always)]
    fn maybe_timed(id: u32, every: u32, units: i64) -> Guard {
        if every <= 1 || sample::timed(units) {
            Guard::timed(id, every.max(1))
        } else {
            Guard {
                tag: Guard::tag(id, 0),
                start: 0,
            }
        }
    }

    /// Starts timing a call of a method site; `self_type` names `Self` (only called once per
    /// `Self` type). Only a trait's default method has more than one `Self` type, and so more than
    /// one name.
    ///
    /// ```
    /// # use fnmetrics_core::__private::{Guard, Site};
    /// trait Cache {
    ///     fn lookup(&self) {
    ///         fn here() -> &'static str {
    ///             std::any::type_name_of_val(&here)
    ///         }
    ///         static SITE: Site = Site::path(here, module_path!(), "lookup");
    ///         Guard::start_method(&SITE, std::any::type_name::<Self>).finish(false);
    ///     }
    /// }
    /// struct Memory;
    /// impl Cache for Memory {}
    /// fn main() {
    ///     Memory.lookup();
    ///     let name = concat!(module_path!(), "::<Memory as Cache>::lookup");
    ///     assert!(fnmetrics_core::get(name).is_some());
    /// }
    /// ```
    #[inline(always)]
    pub fn start_method(site: &'static Site, self_type: fn() -> &'static str) -> Guard {
        let id = site.method_id(self_type);
        if sample::default_on() {
            return Guard::start_by_default(id);
        }
        Guard::timed(id, 1)
    }

    /// [`Guard::start_method`] for a site that times about one call in `every`.
    ///
    /// ```
    /// # use fnmetrics_core::__private::{Guard, Site};
    /// # static SITE: Site = Site::new("doc::guard::start_method_sampled");
    /// Guard::start_method_sampled(&SITE, std::any::type_name::<u8>, 8).finish(false);
    /// ```
    #[inline(always)]
    pub fn start_method_sampled(
        site: &'static Site,
        self_type: fn() -> &'static str,
        every: u32,
    ) -> Guard {
        Guard::maybe_timed(site.method_id(self_type), every, sample::units(every))
    }

    /// Records the call as finished, failed or not.
    ///
    /// ```
    /// # use fnmetrics_core::__private::{Guard, Site};
    /// # static SITE: Site = Site::new("doc::guard::finish");
    /// Guard::start(&SITE).finish(false);
    /// ```
    #[inline(always)]
    pub fn finish(self, is_error: bool) {
        let outcome = Outcome::of(is_error);
        let (id, weight, start) = (self.id(), self.weight(), self.start);
        std::mem::forget(self);
        if weight == 0 {
            // Only while the run-time default samples: out of the usual path.
            Guard::record_untimed_cold(id, outcome);
        } else if let Some(end) = crate::clock::raw_end() {
            registry::record(id, weight, start, end, outcome);
        }
    }

    /// [`Guard::finish`] for a site that samples (`#[measured(sample = N)]`): laid out for the
    /// usual call, the one that is not timed.
    ///
    /// ```
    /// # use fnmetrics_core::__private::{Guard, Site};
    /// # static SITE: Site = Site::new("doc::guard::finish_sampled");
    /// Guard::start_sampled(&SITE, 16).finish_sampled(false);
    /// ```
    #[inline(always)]
    pub fn finish_sampled(self, is_error: bool) {
        let outcome = Outcome::of(is_error);
        let (id, weight, start) = (self.id(), self.weight(), self.start);
        std::mem::forget(self);
        if weight == 0 {
            if crate::clock::recording() {
                registry::record_untimed(id, outcome);
            }
        } else {
            Guard::record_timed_cold(id, weight, start, outcome);
        }
    }

    #[cold]
    #[inline(never)]
    fn record_untimed_cold(id: u32, outcome: Outcome) {
        if crate::clock::recording() {
            registry::record_untimed(id, outcome);
        }
    }

    #[cold]
    #[inline(never)]
    fn record_timed_cold(id: u32, weight: u32, start: u64, outcome: Outcome) {
        if let Some(end) = crate::clock::raw_end() {
            registry::record(id, weight, start, end, outcome);
        }
    }

    fn record(&self, outcome: Outcome) {
        if self.weight() == 0 {
            Guard::record_untimed_cold(self.id(), outcome);
        } else {
            Guard::record_timed_cold(self.id(), self.weight(), self.start, outcome);
        }
    }
}

impl Drop for Guard {
    #[cold]
    fn drop(&mut self) {
        let outcome = if std::thread::panicking() {
            Outcome::Panic
        } else {
            Outcome::Cancelled
        };
        self.record(outcome);
    }
}

/// Names an async body's output type outside the body, for [`no_value`]: the code
/// `#[measured]` generates makes one before the body (where no `use` of the body can shadow the
/// type) and moves it in. Always `Send` and `Sync`, whatever `T` is.
///
/// ```
/// let none = fnmetrics_core::__private::no_value(fnmetrics_core::__private::OutputOf::<u8>::new());
/// assert_eq!(none, None);
/// ```
#[derive(Debug)]
pub struct OutputOf<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Default for OutputOf<T> {
    fn default() -> Self {
        OutputOf::new()
    }
}

impl<T> OutputOf<T> {
    /// The marker of `T`.
    ///
    /// ```
    /// let _ = fnmetrics_core::__private::OutputOf::<&str>::new();
    /// ```
    #[inline(always)]
    pub const fn new() -> Self {
        OutputOf(std::marker::PhantomData)
    }
}

/// `None` of the type that `marker` names.
///
/// ```
/// use fnmetrics_core::__private::{no_value, OutputOf};
/// assert_eq!(no_value(OutputOf::<String>::new()), None);
/// ```
#[inline(always)]
pub fn no_value<T>(marker: OutputOf<T>) -> Option<T> {
    let _ = marker;
    None
}

/// Wraps a reference to a return value so that method resolution can tell a `Result` (of any
/// spelling: aliases are the same type) from anything else: autoref specialisation.
///
/// ```
/// use fnmetrics_core::__private::{Probe, ResultKind as _, OtherKind as _};
/// type MyResult = Result<u8, String>;
/// let r: MyResult = Err("no".into());
/// assert!((&Probe(&r)).__fnmetrics_is_err());
/// assert!(!(&Probe(&5u8)).__fnmetrics_is_err());
/// ```
#[derive(Debug)]
pub struct Probe<'a, T: ?Sized>(pub &'a T);

/// Chosen for `Probe<Result<T, E>>`: an `Err` is an error.
pub trait ResultKind {
    /// Whether the value is an `Err`.
    fn __fnmetrics_is_err(&self) -> bool;
}

impl<T, E> ResultKind for Probe<'_, Result<T, E>> {
    #[inline(always)]
    fn __fnmetrics_is_err(&self) -> bool {
        self.0.is_err()
    }
}

/// Chosen for every other type: never an error.
pub trait OtherKind {
    /// Always false.
    #[inline(always)]
    fn __fnmetrics_is_err(&self) -> bool {
        false
    }
}

impl<T: ?Sized> OtherKind for &Probe<'_, T> {}

#[cfg(test)]
mod tests {
    use super::{Guard, Site};

    trait Greet {
        fn hello(&self) {
            fn here() -> &'static str {
                std::any::type_name_of_val(&here)
            }
            static SITE: Site = Site::path(here, module_path!(), "hello");
            Guard::start_method(&SITE, std::any::type_name::<Self>).finish(false);
        }
    }
    struct English;
    struct French;
    impl Greet for English {}
    impl Greet for French {}

    #[test]
    fn a_default_method_is_named_after_each_implementing_type() {
        for _ in 0..3 {
            English.hello();
        }
        French.hello();
        let english = crate::get(concat!(module_path!(), "::<English as Greet>::hello")).unwrap();
        let french = crate::get(concat!(module_path!(), "::<French as Greet>::hello")).unwrap();
        assert_eq!((english.calls, french.calls), (3, 1));
    }
}
