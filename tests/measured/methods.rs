//! Methods of every receiver kind, impl blocks and default trait methods, and their names.

use crate::{counts, MyErr};
use fnmetrics::measured;

struct Type;

impl Type {
    #[measured]
    fn method(&self) -> u8 {
        1
    }

    #[allow(clippy::boxed_local)] // the receiver kind is what is tested
    #[measured]
    fn boxed(self: Box<Self>) -> u8 {
        2
    }

    #[measured]
    fn associated() -> u8 {
        3
    }
}

mod inner {
    use fnmetrics::measured;

    pub(crate) struct Defined;

    impl Defined {
        #[measured]
        pub(crate) fn method(&self) {}
    }
}

struct Wrapper<T>(T);

impl<T: Copy> Wrapper<T> {
    #[measured]
    fn get(&self) -> T {
        self.0
    }
}

trait Speak {
    fn speak(&self) -> &'static str;
}

impl Speak for Type {
    #[measured]
    fn speak(&self) -> &'static str {
        "type"
    }
}

#[test]
fn methods_are_named_after_their_type_and_trait() {
    assert_eq!(Type.method(), 1);
    assert_eq!(Box::new(Type).boxed(), 2);
    assert_eq!(Type::associated(), 3);
    assert_eq!(Type.speak(), "type");
    inner::Defined.method();
    assert_eq!(Wrapper(1u8).get() as u32 + Wrapper(2u32).get(), 3);

    assert_eq!(
        fnmetrics::get(concat!(module_path!(), "::Type::method"))
            .unwrap()
            .calls,
        1
    );
    assert_eq!(
        fnmetrics::get(concat!(module_path!(), "::Type::boxed"))
            .unwrap()
            .calls,
        1
    );
    assert_eq!(
        fnmetrics::get(concat!(module_path!(), "::<Type as Speak>::speak"))
            .unwrap()
            .calls,
        1
    );
    // Without a receiver too.
    assert_eq!(
        fnmetrics::get(concat!(module_path!(), "::Type::associated"))
            .unwrap()
            .calls,
        1
    );
    // The path is where the type is defined.
    let m = fnmetrics::get(concat!(module_path!(), "::inner::Defined::method")).unwrap();
    assert_eq!(m.calls, 1);
    // Generic arguments are dropped: both instantiations share the name.
    assert_eq!(
        fnmetrics::get(concat!(module_path!(), "::Wrapper::get"))
            .unwrap()
            .calls,
        2
    );
}

struct Repo;

#[measured]
impl Repo {
    fn open() -> Repo {
        Repo
    }

    fn load(&self, id: u32) -> Result<u32, MyErr> {
        if id == 0 {
            Err(MyErr)
        } else {
            Ok(id)
        }
    }

    #[measured(name = "measured::repo_store")]
    fn store(&mut self) {}
}

#[measured]
impl Speak for Repo {
    fn speak(&self) -> &'static str {
        "repo"
    }
}

#[test]
fn impl_blocks_name_every_fn_as_its_own_attribute_would() {
    let mut repo = Repo::open();
    repo.load(1).unwrap();
    repo.load(0).unwrap_err();
    repo.store();
    assert_eq!(repo.speak(), "repo");

    assert_eq!(counts(&metrics!("Repo::open")), (1, 0, 0, 0));
    assert_eq!(counts(&metrics!("Repo::load")), (2, 1, 0, 0));
    assert_eq!(counts(&metrics!("<Repo as Speak>::speak")), (1, 0, 0, 0));
    // Its own attribute wins.
    assert!(fnmetrics::get(concat!(module_path!(), "::Repo::store")).is_none());
    assert_eq!(fnmetrics::get("measured::repo_store").unwrap().calls, 1);
}

mod default_methods {
    use fnmetrics::measured;

    pub(super) trait Greet {
        #[measured]
        fn hello(&self) -> Result<(), String> {
            Ok(())
        }
    }

    pub(super) struct English;
    pub(super) struct French;
    impl Greet for English {}
    impl Greet for French {}
}

#[test]
fn a_default_trait_method_is_named_after_each_implementing_type() {
    use default_methods::{English, French, Greet};
    for _ in 0..3 {
        English.hello().unwrap();
    }
    French.hello().unwrap();
    // In the trait's module, like an impl of the trait there would be.
    assert_eq!(
        metrics!("default_methods::<English as Greet>::hello").calls,
        3
    );
    assert_eq!(
        metrics!("default_methods::<French as Greet>::hello").calls,
        1
    );
}
