//! What `#[measured]` expands to: a static [`Site`] per function and a [`Guard`] per call.

use crate::registry::{self, Outcome};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

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
}

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
        }
    }

    #[inline(always)]
    fn id(&'static self, self_type: Option<fn() -> &'static str>) -> u32 {
        match self.id.load(Relaxed) {
            0 => self.register(self_type),
            v => v - 1,
        }
    }

    #[cold]
    #[inline(never)]
    fn register(&'static self, self_type: Option<fn() -> &'static str>) -> u32 {
        let id = match (&self.name, self_type) {
            (SiteName::Fixed(n), _) => registry::register(n),
            (SiteName::Method(m), Some(ty)) => registry::register(&method_name(ty(), m)),
            (SiteName::Method(m), None) => registry::register(m),
        };
        // Racing first calls on two threads both register; `register` returns the same id.
        self.id.store(id + 1, Relaxed);
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
        let id = site.id(None);
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
        let id = site.id(Some(self_type));
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
    #[test]
    fn method_names_drop_generics() {
        assert_eq!(super::method_name("a::B<c::D>", "f"), "a::B::f");
        assert_eq!(super::method_name("a::B", "f"), "a::B::f");
    }
}
