//! `name = ..` and the default names: two functions that differ in the source never share one.

use crate::counts;
use fnmetrics::measured;
use std::fmt;

#[measured(name = "by hand: renamed")]
fn renamed() {}

#[test]
fn name_replaces_the_default() {
    renamed();
    assert_eq!(fnmetrics::get("by hand: renamed").unwrap().calls, 1);
    assert!(fnmetrics::get(concat!(module_path!(), "::renamed")).is_none());
}

const CHECKOUT: &str = "names::checkout";

struct Names;

impl Names {
    const PAY: &'static str = "names::pay";
}

#[measured(name = CHECKOUT)]
fn checkout() {}

#[measured(name = Names::PAY)]
fn pay() {}

#[test]
fn name_can_be_a_constant() {
    checkout();
    pay();
    assert_eq!(fnmetrics::get(CHECKOUT).unwrap().calls, 1);
    assert_eq!(fnmetrics::get(Names::PAY).unwrap().calls, 1);
}

pub(crate) struct Pool;
pub(crate) struct Cache;

impl Pool {
    #[measured]
    pub(crate) fn new() -> Pool {
        Pool
    }
}

impl Cache {
    #[measured]
    pub(crate) fn new() -> Cache {
        Cache
    }
}

#[test]
fn associated_functions_are_named_after_their_type() {
    let _ = (Pool::new(), Pool::new(), Cache::new());
    assert_eq!(counts(&metrics!("Pool::new")), (2, 0, 0, 0));
    assert_eq!(counts(&metrics!("Cache::new")), (1, 0, 0, 0));
    assert!(fnmetrics::get(concat!(module_path!(), "::new")).is_none());
}

struct Money(u32);

impl fmt::Display for Money {
    #[measured]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}", self.0)
    }
}

impl fmt::Debug for Money {
    #[measured]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({})", self.0)
    }
}

#[test]
fn two_trait_impls_of_one_type_are_told_apart() {
    assert_eq!(
        format!("{} {} {:?}", Money(1), Money(2), Money(3)),
        "$1 $2 Money(3)"
    );
    assert_eq!(counts(&metrics!("<Money as Display>::fmt")), (2, 0, 0, 0));
    assert_eq!(counts(&metrics!("<Money as Debug>::fmt")), (1, 0, 0, 0));
}

struct Order;
struct User;

trait Summary {
    fn summary(&self) -> usize;
}

impl Summary for Vec<Order> {
    #[measured]
    fn summary(&self) -> usize {
        self.len()
    }
}

#[measured]
impl Summary for Vec<User> {
    fn summary(&self) -> usize {
        self.len()
    }
}

#[test]
fn one_trait_for_two_instantiations_of_a_type_is_told_apart() {
    assert_eq!(vec![Order, Order].summary() + vec![User].summary(), 3);
    assert_eq!(
        counts(&metrics!("<Vec<Order> as Summary>::summary")),
        (1, 0, 0, 0)
    );
    assert_eq!(
        counts(&metrics!("<Vec<User> as Summary>::summary")),
        (1, 0, 0, 0)
    );
}

mod first {
    #[fnmetrics::measured]
    pub(crate) fn helper() {
        #[fnmetrics::measured]
        fn inner() {}
        inner();
    }
}

mod second {
    #[fnmetrics::measured]
    pub(crate) fn helper() {
        #[fnmetrics::measured]
        fn inner() {}
        inner();
    }
}

#[test]
fn fns_in_fns_and_modules_are_told_apart() {
    first::helper();
    second::helper();
    second::helper();
    assert_eq!(counts(&metrics!("first::helper::inner")), (1, 0, 0, 0));
    assert_eq!(counts(&metrics!("second::helper::inner")), (2, 0, 0, 0));
}

struct Generic<T>(T);

impl<T> Generic<T> {
    #[measured]
    fn get(&self) -> &T {
        &self.0
    }
}

impl Generic<u8> {
    #[measured]
    fn byte(&self) -> u8 {
        self.0
    }
}

#[test]
fn impl_parameters_are_left_out_and_concrete_arguments_kept() {
    assert_eq!(*Generic(1u8).get() as u32 + *Generic(2u32).get(), 3);
    assert_eq!(Generic(4u8).byte(), 4);
    assert_eq!(counts(&metrics!("Generic::get")), (2, 0, 0, 0));
    assert_eq!(counts(&metrics!("Generic<u8>::byte")), (1, 0, 0, 0));
}
