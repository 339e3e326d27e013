//! What `#[measured]` expands to: a static [`Site`] per function and a [`Guard`] per call.

use crate::outcome::Outcome;
use crate::registry;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::*};

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
    /// A method: the name is `<Self type path>::<method>`, found on first call.
    Method(&'static str),
}

impl Site {
    /// A site with a fixed name.
    ///
    /// ```
    /// static SITE: fnmetrics_core::__private::Site = fnmetrics_core::__private::Site::new("f");
    /// ```
    pub const fn new(name: &'static str) -> Site {
        Site {
            name: SiteName::Fixed(name),
            id: AtomicU32::new(0),
            ty: AtomicUsize::new(0),
            more: [const { (AtomicUsize::new(0), AtomicU32::new(0)) }; MORE_TYPES],
        }
    }

    /// A site for method `method`, named after the `Self` type given to [`Guard::start_method`].
    ///
    /// ```
    /// static SITE: fnmetrics_core::__private::Site = fnmetrics_core::__private::Site::method("len");
    /// ```
    pub const fn method(method: &'static str) -> Site {
        Site {
            name: SiteName::Method(method),
            id: AtomicU32::new(0),
            ty: AtomicUsize::new(0),
            more: [const { (AtomicUsize::new(0), AtomicU32::new(0)) }; MORE_TYPES],
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
        let id = match &self.name {
            SiteName::Fixed(n) | SiteName::Method(n) => registry::register(n),
        };
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
            if ty.load(Acquire) == key {
                if let v @ 1.. = id.load(Acquire) {
                    return v - 1;
                }
            }
        }
        let method = match &self.name {
            SiteName::Method(m) | SiteName::Fixed(m) => m,
        };
        let id = registry::register(&method_name(self_type(), method));
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

/// `my_app::Repo<T>::load` → `my_app::Repo::load`: generic arguments are dropped so that every
/// instantiation shares one name.
fn method_name(self_type: &str, method: &str) -> String {
    let base = self_type.split('<').next().unwrap_or(self_type);
    let base = base.trim_start_matches('&').trim_start_matches("mut ");
    format!("{base}::{method}")
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
    id: u32,
    start: u64,
}

impl Guard {
    /// Starts timing a call of `site`.
    ///
    /// ```
    /// # use fnmetrics_core::__private::{Guard, Site};
    /// # static SITE: Site = Site::new("doc::guard::start");
    /// Guard::start(&SITE).finish(true);
    /// ```
    #[inline(always)]
    pub fn start(site: &'static Site) -> Guard {
        let id = site.id();
        Guard {
            id,
            start: crate::clock::raw_now(),
        }
    }

    /// Starts timing a call of a method site; `self_type` names `Self` (only called once).
    ///
    /// ```
    /// # use fnmetrics_core::__private::{Guard, Site};
    /// struct Cache;
    /// static SITE: Site = Site::method("lookup");
    /// Guard::start_method(&SITE, std::any::type_name::<Cache>).finish(false);
    /// assert!(fnmetrics_core::get(&format!("{}::lookup", std::any::type_name::<Cache>())).is_some());
    /// ```
    #[inline(always)]
    pub fn start_method(site: &'static Site, self_type: fn() -> &'static str) -> Guard {
        let id = site.method_id(self_type);
        Guard {
            id,
            start: crate::clock::raw_now(),
        }
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
        let end = crate::clock::raw_now();
        let outcome = if is_error {
            Outcome::Error
        } else {
            Outcome::Ok
        };
        registry::record(self.id, self.start, end, outcome);
        std::mem::forget(self);
    }
}

impl Drop for Guard {
    #[cold]
    fn drop(&mut self) {
        let end = crate::clock::raw_now();
        let outcome = if std::thread::panicking() {
            Outcome::Panic
        } else {
            Outcome::Cancelled
        };
        registry::record(self.id, self.start, end, outcome);
    }
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
            static SITE: Site = Site::method("hello");
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
        let name = |t: &str| format!("{t}::hello");
        let english = crate::get(&name(std::any::type_name::<English>())).unwrap();
        let french = crate::get(&name(std::any::type_name::<French>())).unwrap();
        assert_eq!((english.calls, french.calls), (3, 1));
    }

    #[test]
    fn method_names_drop_generics() {
        assert_eq!(super::method_name("a::B<c::D>", "f"), "a::B::f");
        assert_eq!(super::method_name("a::B", "f"), "a::B::f");
    }
}
