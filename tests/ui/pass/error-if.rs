//! `error_if` and `ok_if`: functions of the return value deciding what counts as an error.
#![deny(warnings)]

use fnmetrics::measured;

#[derive(Debug, PartialEq)]
enum Status {
    Ok,
    NotFound,
    Failed,
}

fn failed(status: &Status) -> bool {
    *status == Status::Failed
}

#[measured(error_if = failed)]
fn fetch(status: Status) -> Status {
    status
}

#[derive(Debug)]
enum LookupError {
    NotFound,
    Io,
}

fn is_not_found(result: &Result<u8, LookupError>) -> bool {
    matches!(result, Err(LookupError::NotFound))
}

// A missing key is a normal answer, not a failure.
#[measured(ok_if = is_not_found)]
fn lookup(key: u8) -> Result<u8, LookupError> {
    match key {
        0 => Err(LookupError::NotFound),
        1 => Err(LookupError::Io),
        k => Ok(k),
    }
}

fn over<const N: u32>(value: &u32) -> bool {
    *value > N
}

struct Checks;

impl Checks {
    fn odd(value: &u32) -> bool {
        value % 2 == 1
    }
}

// Both: an error when `error_if` says so, unless `ok_if` excuses it.
#[measured(error_if = over::<10>, ok_if = Checks::odd)]
fn measure(value: u32) -> u32 {
    value
}

#[measured(error_if = Option::is_none)]
async fn load_first() -> Option<u8> {
    None
}

fn is_blank(text: &&'static str) -> bool {
    text.trim().is_empty()
}

// The checker names the hidden type of an `impl Trait` result.
#[measured(error_if = is_blank)]
fn greeting(blank: bool) -> impl std::fmt::Display {
    if blank {
        " "
    } else {
        "hello"
    }
}

fn main() {
    fetch(Status::Ok);
    fetch(Status::NotFound);
    fetch(Status::Failed);
    let m = fnmetrics::get(concat!(module_path!(), "::fetch")).unwrap();
    assert_eq!((m.calls, m.errors), (3, 1));

    for key in 0..4 {
        let _ = lookup(key);
    }
    let m = fnmetrics::get(concat!(module_path!(), "::lookup")).unwrap();
    assert_eq!((m.calls, m.errors), (4, 1));

    for value in [1, 12, 13, 20] {
        measure(value);
    }
    let m = fnmetrics::get(concat!(module_path!(), "::measure")).unwrap();
    assert_eq!((m.calls, m.errors), (4, 2));

    assert!(pollster::block_on(load_first()).is_none());
    let m = fnmetrics::get(concat!(module_path!(), "::load_first")).unwrap();
    assert_eq!((m.calls, m.errors), (1, 1));
    let _ = (LookupError::Io, LookupError::NotFound);

    assert_eq!(greeting(false).to_string(), "hello");
    assert_eq!(greeting(true).to_string(), " ");
    let m = fnmetrics::get(concat!(module_path!(), "::greeting")).unwrap();
    assert_eq!((m.calls, m.errors), (2, 1));
}
