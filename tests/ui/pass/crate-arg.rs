//! `crate = path` for code that reaches fnmetrics through a re-export.
#![deny(warnings)]

/// What a library wrapping fnmetrics would offer.
mod telemetry {
    pub use ::fnmetrics as metrics;
    pub use ::fnmetrics::measured;
}

#[telemetry::measured(crate = crate::telemetry::metrics)]
fn relative(fail: bool) -> Result<(), String> {
    if fail {
        return Err("failed".to_owned());
    }
    Ok(())
}

#[telemetry::measured(crate = ::fnmetrics, name = "crate_arg::absolute")]
fn absolute() {}

struct Service;

#[telemetry::measured(crate = telemetry::metrics)]
impl Service {
    fn call(&self) -> Option<u8> {
        None
    }
}

fn main() {
    relative(true).unwrap_err();
    relative(false).unwrap();
    absolute();
    assert_eq!(Service.call(), None);
    let m = telemetry::metrics::get(concat!(module_path!(), "::relative")).unwrap();
    assert_eq!((m.calls, m.errors), (2, 1));
    assert_eq!(
        telemetry::metrics::get("crate_arg::absolute")
            .unwrap()
            .calls,
        1
    );
    let m = telemetry::metrics::get(concat!(module_path!(), "::Service::call")).unwrap();
    assert_eq!((m.calls, m.errors), (1, 0));
}
