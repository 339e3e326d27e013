//! The shape files of `tests/ui/shapes`, compiled once more as modules of this test, so that
//! rustc and clippy (`scripts/test` runs `cargo clippy --all-targets -- -D warnings`) lint them as
//! the user code they stand for: no lint may fire because of `#[measured]`. Each file also denies
//! warnings itself; `tests/ui.rs` builds and runs them as programs, with and without the
//! attribute.
#![cfg(not(feature = "disabled"))]

#[path = "ui/shapes/futures.rs"]
mod futures;
#[path = "ui/shapes/hygiene.rs"]
mod hygiene;
#[path = "ui/shapes/inference.rs"]
mod inference;
#[path = "ui/shapes/lints.rs"]
mod lints;

#[test]
fn every_shape_runs() {
    futures::main();
    hygiene::main();
    inference::main();
    lints::main();
}
