//! Compile tests of `#[measured]`: what must build (and run), and what must fail with one clear
//! error.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
