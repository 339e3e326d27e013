//! Outcomes: `Err` of any `Result` spelling, `?` and early returns, panics, `error_if`/`ok_if`.

use crate::{counts, MyErr};
use fnmetrics::measured;

type Res<T> = Result<T, MyErr>;

/// Shaped like `anyhow::Result`: a default error type.
type AnyResult<T, E = Box<dyn std::error::Error + Send + Sync>> = Result<T, E>;

#[measured]
fn plain_result(fail: bool) -> Result<u8, MyErr> {
    if fail {
        Err(MyErr)
    } else {
        Ok(1)
    }
}

#[measured]
fn alias_result(fail: bool) -> Res<u8> {
    if fail {
        Err(MyErr)
    } else {
        Ok(1)
    }
}

#[measured]
fn anyhow_like(input: &str) -> AnyResult<u32> {
    Ok(input.parse::<u32>()?)
}

#[measured]
fn option_none() -> Option<u8> {
    None
}

#[measured]
fn unit() {}

#[test]
fn ok_and_err_are_counted_through_aliases() {
    plain_result(false).unwrap();
    plain_result(true).unwrap_err();
    plain_result(true).unwrap_err();
    assert_eq!(counts(&metrics!("plain_result")), (3, 2, 0, 0));

    alias_result(false).unwrap();
    alias_result(true).unwrap_err();
    assert_eq!(counts(&metrics!("alias_result")), (2, 1, 0, 0));

    anyhow_like("1").unwrap();
    anyhow_like("x").unwrap_err();
    assert_eq!(counts(&metrics!("anyhow_like")), (2, 1, 0, 0));
}

#[test]
fn only_result_errors_count_as_errors() {
    assert_eq!(option_none(), None);
    unit();
    assert_eq!(counts(&metrics!("option_none")), (1, 0, 0, 0));
    assert_eq!(counts(&metrics!("unit")), (1, 0, 0, 0));
}

#[measured]
fn question_mark(input: &str) -> Result<u32, std::num::ParseIntError> {
    let n: u32 = input.parse()?;
    Ok(n + 1)
}

#[measured]
fn question_mark_converted(input: &str) -> Result<u32, Box<dyn std::error::Error>> {
    let n: u32 = input.parse()?;
    Ok(n)
}

#[measured]
fn early_return(n: i32) -> Result<i32, MyErr> {
    if n < 0 {
        return Err(MyErr);
    }
    if n == 0 {
        return Ok(0);
    }
    Ok(n * 2)
}

#[test]
fn question_mark_and_early_return_are_seen() {
    assert_eq!(question_mark("1"), Ok(2));
    assert!(question_mark("x").is_err());
    assert_eq!(counts(&metrics!("question_mark")), (2, 1, 0, 0));

    assert!(question_mark_converted("-").is_err());
    assert_eq!(counts(&metrics!("question_mark_converted")), (1, 1, 0, 0));

    assert_eq!(early_return(-1), Err(MyErr));
    assert_eq!(early_return(0), Ok(0));
    assert_eq!(early_return(2), Ok(4));
    assert_eq!(counts(&metrics!("early_return")), (3, 1, 0, 0));
}

#[measured]
fn explode(n: u32) -> Result<u32, MyErr> {
    if n == 0 {
        panic!("boom");
    }
    Ok(n)
}

#[measured]
fn explode_never() -> ! {
    panic!("never returns")
}

#[test]
fn panics_are_counted_and_still_unwind() {
    explode(1).unwrap();
    let caught = std::panic::catch_unwind(|| explode(0));
    assert_eq!(
        caught.unwrap_err().downcast_ref::<&str>().copied(),
        Some("boom")
    );
    assert_eq!(counts(&metrics!("explode")), (2, 1, 1, 0));

    assert!(std::panic::catch_unwind(|| explode_never()).is_err());
    assert_eq!(counts(&metrics!("explode_never")), (1, 1, 1, 0));
}

#[derive(Debug, PartialEq)]
enum Status {
    Done,
    Retry,
    Failed,
}

fn status_failed(status: &Status) -> bool {
    *status == Status::Failed
}

fn status_retry(status: &Status) -> bool {
    *status == Status::Retry
}

fn not_found(result: &Result<u8, std::io::Error>) -> bool {
    matches!(result, Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

fn err_or_retry(status: &Status) -> bool {
    *status != Status::Done
}

#[measured(error_if = status_failed)]
fn run_job(status: Status) -> Status {
    status
}

#[measured(ok_if = not_found)]
fn read_config(kind: std::io::ErrorKind) -> Result<u8, std::io::Error> {
    Err(kind.into())
}

#[measured(error_if = err_or_retry, ok_if = status_retry)]
fn run_both(status: Status) -> Status {
    status
}

#[measured(error_if = status_failed)]
async fn run_job_async(status: Status) -> Status {
    status
}

#[test]
fn error_if_and_ok_if_decide_errors() {
    run_job(Status::Done);
    run_job(Status::Retry);
    run_job(Status::Failed);
    assert_eq!(counts(&metrics!("run_job")), (3, 1, 0, 0));

    let _ = read_config(std::io::ErrorKind::NotFound);
    let _ = read_config(std::io::ErrorKind::PermissionDenied);
    assert_eq!(counts(&metrics!("read_config")), (2, 1, 0, 0));

    run_both(Status::Done);
    run_both(Status::Retry);
    run_both(Status::Failed);
    assert_eq!(counts(&metrics!("run_both")), (3, 1, 0, 0));

    pollster::block_on(run_job_async(Status::Failed));
    pollster::block_on(run_job_async(Status::Done));
    assert_eq!(counts(&metrics!("run_job_async")), (2, 1, 0, 0));
}
