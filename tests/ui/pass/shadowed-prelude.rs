//! The generated code uses absolute paths only: it still works when the caller shadows the
//! prelude (`Result`, `Option`, `Box`, `Ok`, `Err`, `Some`, `None`), defines modules named `core`
//! and `fnmetrics`, and macros named like the ones we call.
#![deny(warnings)]
#![allow(dead_code, non_camel_case_types, unused_macros)]

mod core {}
mod fnmetrics {}
mod std {}

macro_rules! concat {
    ($($t:tt)*) => {
        "shadowed concat"
    };
}
macro_rules! module_path {
    () => {
        "shadowed module_path"
    };
}

struct Result;
struct Option;
struct Box;
struct Ok;
struct Err;
struct Some;
struct None;
struct Site;
struct Guard;
struct Probe;
trait ResultKind {}
trait OtherKind {}
type bool = u8;

#[::fnmetrics::measured]
fn fallible(fail: ::std::primitive::bool) -> ::core::result::Result<u8, ::std::string::String> {
    if fail {
        ::core::result::Result::Err(::std::string::String::from("failed"))
    } else {
        ::core::result::Result::Ok(1)
    }
}

#[::fnmetrics::measured]
async fn fallible_async(
    fail: ::std::primitive::bool,
) -> ::core::result::Result<u8, ::std::string::String> {
    fallible(fail)
}

#[::fnmetrics::measured]
fn optional() -> ::core::option::Option<u8> {
    ::core::option::Option::None
}

struct Thing;

impl Thing {
    #[::fnmetrics::measured]
    fn method(&self) -> u8 {
        1
    }
}

#[::fnmetrics::measured]
impl Thing {
    fn in_impl(&self) -> u8 {
        2
    }
}

fn main() {
    ::std::assert!(fallible(true).is_err());
    ::std::assert!(fallible(false).is_ok());
    ::std::assert!(::pollster::block_on(fallible_async(true)).is_err());
    ::std::assert!(optional().is_none());
    ::std::assert_eq!(Thing.method() + Thing.in_impl(), 3);

    let name = ::std::format!("{}::fallible", ::core::module_path!());
    let m = ::fnmetrics::get(&name).unwrap();
    ::std::assert_eq!((m.calls, m.errors), (3, 2));
    let name = ::std::format!("{}::Thing::in_impl", ::core::module_path!());
    ::std::assert_eq!(::fnmetrics::get(&name).unwrap().calls, 1);
}
