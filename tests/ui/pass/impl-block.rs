//! `#[measured]` on impl blocks, inherent and trait impls: every fn in it is measured and named
//! as if it had its own `#[measured]` (`<type path>::<fn>`, `<module path>::<<type> as
//! <trait>>::<fn>`); a method with its own `#[measured]` keeps its own settings, a `const fn` is
//! left alone.
#![deny(warnings)]

use fnmetrics::measured;
use std::fmt;

#[derive(Debug)]
struct NotFound;

struct Repo<T> {
    rows: Vec<T>,
}

#[measured]
impl<T: Clone> Repo<T> {
    fn new() -> Self {
        Repo { rows: Vec::new() }
    }

    fn insert(&mut self, row: T) {
        self.rows.push(row);
    }

    fn load(&self, id: usize) -> Result<T, NotFound> {
        self.rows.get(id).cloned().ok_or(NotFound)
    }

    #[measured(name = "impl_block::count")]
    fn count(&self) -> usize {
        self.rows.len()
    }

    const fn capacity_hint() -> usize {
        16
    }
}

#[measured]
impl<T: fmt::Debug> fmt::Debug for Repo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.rows).finish()
    }
}

trait Named {
    fn name(&self) -> &'static str;
}

#[measured]
impl Named for &str {
    fn name(&self) -> &'static str {
        "str"
    }
}

fn main() {
    let mut repo = Repo::new();
    repo.insert(1u8);
    assert_eq!(repo.load(0).unwrap(), 1);
    assert!(repo.load(7).is_err());
    assert_eq!(repo.count(), 1);
    assert_eq!(format!("{repo:?}"), "[1]");
    let mut strings = Repo::<String>::new();
    strings.insert("a".to_owned());
    assert_eq!(Repo::<u8>::capacity_hint(), 16);
    assert_eq!("x".name(), "str");

    let name = |method: &str| format!("{}::Repo::{method}", module_path!());
    assert_eq!(fnmetrics::get(&name("new")).unwrap().calls, 2);
    assert_eq!(fnmetrics::get(&name("insert")).unwrap().calls, 2);
    let m = fnmetrics::get(&name("load")).unwrap();
    assert_eq!((m.calls, m.errors), (2, 1));
    let debug = concat!(module_path!(), "::<Repo as Debug>::fmt");
    assert_eq!(fnmetrics::get(debug).unwrap().calls, 1);
    assert!(fnmetrics::get(&name("count")).is_none());
    assert_eq!(fnmetrics::get("impl_block::count").unwrap().calls, 1);
    assert!(fnmetrics::get(&name("capacity_hint")).is_none());
    assert_eq!(
        fnmetrics::get(concat!(module_path!(), "::<&str as Named>::name"))
            .unwrap()
            .calls,
        1
    );
}
