//! What `#[measured]` records at run time: outcomes, names, cancellations, timings and exact counts.
//!
//! Tests run in parallel in one process and never reset the registry, so each one measures
//! functions of its own and reads them by name.

use fnmetrics::{measured, Snapshot};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// The metrics of the function at `path` in this module.
fn metrics(path: &str) -> Snapshot {
    let name = format!("{}::{path}", module_path!());
    fnmetrics::get(&name).unwrap_or_else(|| panic!("nothing recorded for {name}"))
}

/// `(calls, errors, panics, cancelled)`.
fn counts(m: &Snapshot) -> (u64, u64, u64, u64) {
    (m.calls, m.errors, m.panics, m.cancelled)
}

#[derive(Debug, PartialEq)]
struct MyErr;

impl std::fmt::Display for MyErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("my error")
    }
}

impl std::error::Error for MyErr {}

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
    assert_eq!(counts(&metrics("plain_result")), (3, 2, 0, 0));

    alias_result(false).unwrap();
    alias_result(true).unwrap_err();
    assert_eq!(counts(&metrics("alias_result")), (2, 1, 0, 0));

    anyhow_like("1").unwrap();
    anyhow_like("x").unwrap_err();
    assert_eq!(counts(&metrics("anyhow_like")), (2, 1, 0, 0));
}

#[test]
fn only_result_errors_count_as_errors() {
    assert_eq!(option_none(), None);
    unit();
    assert_eq!(counts(&metrics("option_none")), (1, 0, 0, 0));
    assert_eq!(counts(&metrics("unit")), (1, 0, 0, 0));
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
    assert_eq!(counts(&metrics("question_mark")), (2, 1, 0, 0));

    assert!(question_mark_converted("-").is_err());
    assert_eq!(counts(&metrics("question_mark_converted")), (1, 1, 0, 0));

    assert_eq!(early_return(-1), Err(MyErr));
    assert_eq!(early_return(0), Ok(0));
    assert_eq!(early_return(2), Ok(4));
    assert_eq!(counts(&metrics("early_return")), (3, 1, 0, 0));
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
    assert_eq!(counts(&metrics("explode")), (2, 1, 1, 0));

    assert!(std::panic::catch_unwind(|| explode_never()).is_err());
    assert_eq!(counts(&metrics("explode_never")), (1, 1, 1, 0));
}

#[measured]
async fn async_fallible(fail: bool) -> Result<u8, MyErr> {
    YieldOnce::default().await;
    if fail {
        return Err(MyErr);
    }
    Ok(1)
}

#[measured]
async fn async_explode() -> u8 {
    panic!("async boom")
}

#[test]
fn async_outcomes_are_counted() {
    assert_eq!(pollster::block_on(async_fallible(false)), Ok(1));
    assert_eq!(pollster::block_on(async_fallible(true)), Err(MyErr));
    assert_eq!(counts(&metrics("async_fallible")), (2, 1, 0, 0));

    assert!(std::panic::catch_unwind(|| pollster::block_on(async_explode())).is_err());
    assert_eq!(counts(&metrics("async_explode")), (1, 1, 1, 0));
}

/// Pending on the first poll, ready on the second.
#[derive(Default)]
struct YieldOnce {
    yielded: bool,
}

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[measured]
async fn abandoned() -> Result<(), MyErr> {
    YieldOnce::default().await;
    Ok(())
}

#[measured]
async fn never_polled() {}

#[test]
fn dropped_futures_are_counted_as_cancelled_not_as_calls() {
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..2 {
        let mut future = Box::pin(abandoned());
        assert!(future.as_mut().poll(&mut cx).is_pending());
        drop(future);
    }
    let m = metrics("abandoned");
    assert_eq!(counts(&m), (0, 0, 0, 2));
    assert_eq!(m.total(), Duration::ZERO);

    // Finishing after a pending poll is an ordinary call.
    let mut future = Box::pin(abandoned());
    assert!(future.as_mut().poll(&mut cx).is_pending());
    assert_eq!(future.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
    assert_eq!(counts(&metrics("abandoned")), (1, 0, 0, 2));

    // The body, and so the measurement, starts at the first poll.
    drop(never_polled());
    assert!(fnmetrics::get(concat!(module_path!(), "::never_polled")).is_none());
}

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
fn methods_are_named_after_their_self_type() {
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
        fnmetrics::get(concat!(module_path!(), "::Type::speak"))
            .unwrap()
            .calls,
        1
    );
    // Without a receiver there is no `Self` value to name: the fn is named after its module.
    assert_eq!(
        fnmetrics::get(concat!(module_path!(), "::associated"))
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

    #[measured(name = "macro_behaviour::repo_store")]
    fn store(&mut self) {}
}

#[measured]
impl Speak for Repo {
    fn speak(&self) -> &'static str {
        "repo"
    }
}

#[test]
fn impl_blocks_name_every_fn_after_the_written_self_type() {
    let mut repo = Repo::open();
    repo.load(1).unwrap();
    repo.load(0).unwrap_err();
    repo.store();
    assert_eq!(repo.speak(), "repo");

    assert_eq!(counts(&metrics("Repo::open")), (1, 0, 0, 0));
    assert_eq!(counts(&metrics("Repo::load")), (2, 1, 0, 0));
    assert_eq!(counts(&metrics("Repo::speak")), (1, 0, 0, 0));
    // Its own attribute wins.
    assert!(fnmetrics::get(concat!(module_path!(), "::Repo::store")).is_none());
    assert_eq!(
        fnmetrics::get("macro_behaviour::repo_store").unwrap().calls,
        1
    );
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
    assert_eq!(counts(&metrics("run_job")), (3, 1, 0, 0));

    let _ = read_config(std::io::ErrorKind::NotFound);
    let _ = read_config(std::io::ErrorKind::PermissionDenied);
    assert_eq!(counts(&metrics("read_config")), (2, 1, 0, 0));

    run_both(Status::Done);
    run_both(Status::Retry);
    run_both(Status::Failed);
    assert_eq!(counts(&metrics("run_both")), (3, 1, 0, 0));

    pollster::block_on(run_job_async(Status::Failed));
    pollster::block_on(run_job_async(Status::Done));
    assert_eq!(counts(&metrics("run_job_async")), (2, 1, 0, 0));
}

#[measured(name = "by hand: renamed")]
fn renamed() {}

#[test]
fn name_replaces_the_default() {
    renamed();
    assert_eq!(fnmetrics::get("by hand: renamed").unwrap().calls, 1);
    assert!(fnmetrics::get(concat!(module_path!(), "::renamed")).is_none());
}

#[measured]
fn hot(i: u64) -> Result<u64, MyErr> {
    if i.is_multiple_of(5) {
        Err(MyErr)
    } else {
        Ok(i)
    }
}

#[test]
fn counts_are_exact_under_concurrency() {
    const THREADS: u64 = 4;
    const CALLS: u64 = 250_000;
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(|| {
                for i in 0..CALLS {
                    let _ = hot(i);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let m = metrics("hot");
    assert_eq!(counts(&m), (1_000_000, THREADS * CALLS / 5, 0, 0));
    assert_eq!(m.histogram().count(), 1_000_000);
}

#[measured]
fn describe<T: std::fmt::Debug>(value: T) -> String {
    format!("{value:?}")
}

#[test]
fn generic_instantiations_share_one_name() {
    describe(1u8);
    describe("two");
    describe(vec![3]);
    assert_eq!(counts(&metrics("describe")), (3, 0, 0, 0));
}

#[measured]
fn factorial(n: u64) -> u64 {
    if n <= 1 {
        return 1;
    }
    n * factorial(n - 1)
}

#[measured]
fn find_zero(n: u32) -> Result<u32, MyErr> {
    match n {
        0 => Err(MyErr),
        n => find_zero(n - 1).or(Ok(n)),
    }
}

#[test]
fn recursion_counts_every_level() {
    assert_eq!(factorial(10), 3_628_800);
    assert_eq!(counts(&metrics("factorial")), (10, 0, 0, 0));
    assert_eq!(find_zero(4), Ok(1));
    assert_eq!(counts(&metrics("find_zero")), (5, 1, 0, 0));
}

#[measured]
fn nap(millis: u64) {
    std::thread::sleep(Duration::from_millis(millis));
}

#[measured]
async fn nap_async(millis: u64) {
    std::thread::sleep(Duration::from_millis(millis));
}

#[test]
fn call_times_cover_the_body() {
    for millis in [5, 10, 15] {
        nap(millis);
    }
    let m = metrics("nap");
    assert_eq!(m.calls, 3);
    assert!(m.min() >= Duration::from_millis(5), "{m:?}");
    assert!(m.max() >= Duration::from_millis(15), "{m:?}");
    assert!(m.total() >= Duration::from_millis(30), "{m:?}");
    assert!(m.min() <= m.mean() && m.mean() <= m.max(), "{m:?}");
    let median = m.quantile(0.5);
    assert!(m.min() <= median && median <= m.max(), "{m:?}");

    pollster::block_on(nap_async(5));
    assert!(metrics("nap_async").min() >= Duration::from_millis(5));
}

mod async_trait_methods {
    use super::{MyErr, YieldOnce};
    use async_trait::async_trait;
    use fnmetrics::measured;

    #[async_trait]
    pub(crate) trait Fetch {
        async fn fetch(&self, fail: bool) -> Result<u8, MyErr>;
    }

    pub(crate) struct Client;

    #[async_trait]
    impl Fetch for Client {
        #[measured]
        async fn fetch(&self, fail: bool) -> Result<u8, MyErr> {
            YieldOnce::default().await;
            if fail {
                return Err(MyErr);
            }
            Ok(1)
        }
    }
}

#[test]
fn async_trait_methods_are_measured_inside_their_future() {
    use async_trait_methods::{Client, Fetch};
    assert_eq!(pollster::block_on(Client.fetch(false)), Ok(1));
    assert_eq!(pollster::block_on(Client.fetch(true)), Err(MyErr));

    // Cancelled mid-await: the guard lives in the boxed future.
    let mut future = Client.fetch(false);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(future.as_mut().poll(&mut cx).is_pending());
    drop(future);

    let m = metrics("async_trait_methods::Client::fetch");
    assert_eq!(counts(&m), (2, 1, 0, 1));
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
    let get = |ty: &str| fnmetrics::get(&format!("{ty}::hello")).expect(ty).calls;
    assert_eq!(get(std::any::type_name::<English>()), 3);
    assert_eq!(get(std::any::type_name::<French>()), 1);
}
