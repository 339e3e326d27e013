//! Tests that need a process to themselves: one that starts a flusher (one runs per process), or
//! changes a process-wide setting. [`own_process!`](crate::own_process!) as a test's first line
//! runs that test again, alone, in a child process of the test binary, so the tests of one binary
//! run in parallel without a lock.

use crate::TempDir;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that names the one test a child process runs.
const OWN_PROCESS: &str = "FNMETRICS_OWN_PROCESS";

/// How long a test may run in its own process before it is killed and fails.
const TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the test it is written in (as its first line) in a process of its own: in the test
/// binary's process it runs the test binary again for this one test, forwards the child's
/// output, fails the test if the child failed (or ran 5 minutes), and returns from the test;
/// in the child it does nothing, and the test's body runs.
///
/// The test is found by its path in the binary (modules and name), which the macro reads from
/// the type name of a function it declares; the test must return `()`.
///
/// ```no_run
/// #[test]
/// fn starts_a_flusher() {
///     fnmetrics_test_support::own_process!();
///     // .. runs in a process of its own
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! own_process {
    () => {{
        fn __fnmetrics_own_process() {}
        if !$crate::own_process::own_process(::std::any::type_name_of_val(&__fnmetrics_own_process))
        {
            return;
        }
    }};
}

/// What [`own_process!`](crate::own_process!) calls with the type name of a function declared
/// in the test (`<crate>::<modules>::<test>::<function>`): `true` in the test's own process
/// (run the test's body), `false` in the test binary's process once the test passed in its
/// own.
///
/// # Panics
///
/// If the test failed in its own process, ran longer than 5 minutes, or is not found by that
/// name; the message holds the child's output.
#[track_caller]
pub fn own_process(type_name: &str) -> bool {
    let test = test_path(type_name);
    if std::env::var(OWN_PROCESS).is_ok_and(|t| t == test) {
        return true;
    }
    let dir = TempDir::new("own-process");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let file = |p: &std::path::Path| std::fs::File::create(p).expect("a file for the output");
    // Files rather than pipes: nothing to drain meanwhile, and a server the child leaves
    // behind holds no pipe open.
    let mut child = Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([&test, "--exact", "--include-ignored", "--nocapture"])
        .arg("--test-threads=1")
        .env(OWN_PROCESS, &test)
        .stdin(Stdio::null())
        .stdout(file(&out_path))
        .stderr(file(&err_path))
        .spawn()
        .expect("the test binary runs again");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child test's status") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    let (stdout, stderr) = (read(&out_path), read(&err_path));
    let failed = match status {
        None => format!("ran longer than {TIMEOUT:?} and was killed"),
        Some(s) if !s.success() => format!("failed ({s})"),
        Some(_) if !stdout.contains("running 1 test") => "was not found by that name".into(),
        Some(_) => {
            print!("{stdout}");
            eprint!("{stderr}");
            return false;
        }
    };
    panic!("test `{test}`, in a process of its own, {failed}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
}

/// The path `--exact` takes of the test holding the function named `type_name`: without the
/// crate, the function and any closure (an `async` block) around it.
fn test_path(type_name: &str) -> String {
    let mut parts: Vec<&str> = type_name
        .split("::")
        .filter(|p| *p != "{{closure}}")
        .collect();
    parts.pop(); // the function the macro declares
    parts[1..].join("::")
}

#[cfg(test)]
mod tests {
    use super::test_path;

    #[test]
    fn the_path_is_the_test_s_in_its_binary() {
        assert_eq!(test_path("flusher::a_test::__f"), "a_test");
        assert_eq!(test_path("cli::status::a_test::__f"), "status::a_test");
        assert_eq!(
            test_path("cli::top::a_test::{{closure}}::__f"),
            "top::a_test"
        );
    }
}
