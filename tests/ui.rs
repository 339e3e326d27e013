//! Compile tests of `#[measured]`: what must build (and run), and what must fail with one clear
//! error.
//!
//! `tests/ui/shapes/*.rs` are built twice: as written, and as a bare twin with every
//! `#[measured..]` line (and the `use` of it) taken out. Both must build and run, so the attribute
//! never changes what compiles or what the function does.

//!
//! Built without the `disabled` feature only: with it `#[measured]` leaves items bare and the pass
//! cases that read what was recorded cannot pass.
#![cfg(not(feature = "disabled"))]

use std::path::{Path, PathBuf};

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.pass("tests/ui/shapes/*.rs");
    for bare in bare_twins() {
        t.pass(bare);
    }
    t.compile_fail("tests/ui/fail/*.rs");
}

/// Writes the bare twin of every shape file and returns their paths.
fn bare_twins() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-bare");
    std::fs::create_dir_all(&dir).unwrap();
    let mut twins = Vec::new();
    for entry in std::fs::read_dir("tests/ui/shapes").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let bare: String = source
            .lines()
            .filter(|line| {
                let line = line.trim_start();
                !line.starts_with("#[measured") && line != "use fnmetrics::measured;"
            })
            .flat_map(|line| [line, "\n"])
            .collect();
        assert_ne!(bare, source, "{} has no #[measured]", path.display());
        let twin = dir.join(format!(
            "bare-{}",
            path.file_name().unwrap().to_str().unwrap()
        ));
        std::fs::write(&twin, bare).unwrap();
        twins.push(twin);
    }
    twins.sort();
    twins
}
