//! The `#[measured]` attribute of [fnmetrics](https://docs.rs/fnmetrics).
//!
//! Use it through the `fnmetrics` crate (`fnmetrics::measured`): the code it generates calls the
//! runtime in `fnmetrics::__private`, so this crate is not meant to be a direct dependency.
//!
//! The crate is split like `tracing-attributes`: this file is the entry point and the
//! documentation, `attr.rs` parses the arguments and `expand.rs` writes the instrumented item.

mod attr;
mod expand;

use proc_macro::TokenStream;

/// Records every call of a function: how many, how many failed or panicked, how many futures were
/// dropped before finishing, and how long the calls took.
///
/// ```
/// use fnmetrics::measured;
///
/// #[derive(Debug)]
/// struct NotFound;
///
/// #[measured]
/// fn load_user(id: u64) -> Result<String, NotFound> {
///     if id == 0 {
///         return Err(NotFound);
///     }
///     Ok(format!("user {id}"))
/// }
///
/// # fn main() {
/// load_user(1).unwrap();
/// load_user(0).unwrap_err();
///
/// let m = fnmetrics::get(concat!(module_path!(), "::load_user")).unwrap();
/// assert_eq!((m.calls, m.errors), (2, 1));
/// # }
/// ```
///
/// # What is recorded
///
/// - a **call** for every call that returns or panics, with its duration;
/// - an **error** for every call that returned an error (see below) or panicked;
/// - a **panic** for every call that panicked (counted in the errors too); the panic goes on
///   unwinding as before;
/// - a **cancellation** for every `async fn` future dropped after it was first polled and before
///   it finished (not counted as a call, its time not recorded). A future dropped without ever
///   being polled records nothing: the measurement starts when the body starts.
///
/// Read them with `fnmetrics::get(name)` or `fnmetrics::snapshot_all()`.
///
/// # Names
///
/// Two functions that differ in the source never share a default name; instantiations of one
/// generic function do. The names are short, and do not depend on how a compiler version prints
/// types (see below):
///
/// | function | name |
/// |---|---|
/// | `fn load` in module `app::db` | `app::db::load` |
/// | `fn inner` declared in `fn load` | `app::db::load::inner` |
/// | `fn new` in `impl Pool` (`Pool` in `app::db`), any receiver or none | `app::db::Pool::new` |
/// | `fn get` in `impl<T> Repo<T>` / in `impl Repo<u8>` | `app::db::Repo::get` / `app::db::Repo<u8>::get` |
/// | `fn fmt` in `impl Display for Money`, in module `app` | `app::<Money as Display>::fmt` |
/// | `fn summary` in `impl Summary for Vec<Order>` | `app::<Vec<Order> as Summary>::summary` |
/// | a trait's default method `hello`, called on `English` | `app::<English as Greet>::hello` |
/// | `name = "checkout"` or `name = CHECKOUT` | `checkout` |
///
/// - A trait impl's methods are named in the impl's module, `<type as trait>` written from there:
///   paths in that module lose the module (`db::Order` from `app`, `Order` from `app::db`), paths
///   into `core`, `alloc` and `std` keep their last segment (`Vec`, `Display`), lifetimes are left
///   out, and so are generic arguments that are all the impl's own parameters.
/// - A trait's default method is named after each type it is called on, in the trait's module;
///   without a `self` receiver it has one name, `<trait path>::<fn>`.
/// - `#[measured]` on an impl block names each fn as its own `#[measured]` would.
/// - `name = "..."` (1 to 256 bytes) or `name = PATH` to a `&'static str` constant (checked at
///   compile time) sets the name; a constant a `static` can name, so not `Self::NAME` of a
///   generic impl.
///
/// How: a macro sees only the function, not the impl block around it, so the generated code
/// declares an item in the body and reads where the compiler says it is
/// (`std::any::type_name_of_val`), once, on the first call. That text is not guaranteed to stay
/// the same across compiler versions, so it is parsed leniently and normalised: an impl printed as
/// `<impl Display for Money>` or as `<Money as Display>`, with paths into `core` or `std`, all
/// give the scheme above, which is checked by tests. Names that matter across deployments
/// (dashboards, alerts) are safest given with `name = ..`.
///
/// ```
/// use fnmetrics::measured;
/// use std::fmt;
///
/// struct Money(u32);
///
/// impl Money {
///     #[measured]
///     fn new(cents: u32) -> Money {
///         Money(cents)
///     }
/// }
///
/// impl fmt::Display for Money {
///     #[measured]
///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
///         write!(f, "${}.{:02}", self.0 / 100, self.0 % 100)
///     }
/// }
///
/// const CHECKOUT: &str = "shop.checkout";
///
/// #[measured(name = CHECKOUT)]
/// fn checkout() {}
///
/// fn main() {
///     assert_eq!(Money::new(150).to_string(), "$1.50");
///     checkout();
///     assert!(fnmetrics::get(concat!(module_path!(), "::Money::new")).is_some());
///     assert!(fnmetrics::get(concat!(module_path!(), "::<Money as Display>::fmt")).is_some());
///     assert!(fnmetrics::get("shop.checkout").is_some());
/// }
/// ```
///
/// # Errors
///
/// By default a call is an error when it returns `Err`. This is decided by the return *type*, so
/// aliases work (`io::Result<T>`, `anyhow::Result<T>`, `type Res<T> = Result<T, MyError>`), and
/// `?` and early `return`s are seen. `Option::None` is not an error, and neither is any value of
/// another type (including a whole `impl Trait` return type, which does not say `Result`).
///
/// - `error_if = path`: a `fn(&R) -> bool`, where `R` is the return type; the call is an error
///   exactly when it returns `true`.
/// - `ok_if = path`: a `fn(&R) -> bool` excusing a call the default rule counts as an error.
/// - Both: the call is an error when `error_if` says so and `ok_if` does not.
///
/// ```
/// use fnmetrics::measured;
/// use std::io;
///
/// fn not_found(result: &io::Result<Vec<u8>>) -> bool {
///     matches!(result, Err(e) if e.kind() == io::ErrorKind::NotFound)
/// }
///
/// // A missing file is an answer, not a failure.
/// #[measured(ok_if = not_found)]
/// fn read_optional(path: &str) -> io::Result<Vec<u8>> {
///     std::fs::read(path)
/// }
///
/// fn failed(status: &u16) -> bool {
///     *status >= 500
/// }
///
/// #[measured(error_if = failed)]
/// fn handle(path: &str) -> u16 {
///     if path == "/" { 200 } else { 503 }
/// }
/// ```
///
/// A panic is always an error. A function returning `!` never returns a value, so `error_if` and
/// `ok_if` are refused there.
///
/// # Sampling
///
/// `sample = N` (1 to 1 048 576) counts every call, error, panic and cancellation exactly, and
/// times about one call in `N`, chosen at random on each thread (a Poisson process over the
/// calls, as heap profilers sample allocations), so a function that is slow on every k-th call
/// still gets honest quantiles. The mean, quantiles, min and max are over the timed calls
/// (`Snapshot::timed` says how many); only timed calls make per-call entries. An untimed call
/// reads no clock: for functions called millions of times a second. `sample = 1` times every
/// call, whatever `fnmetrics::set_default_sample` says (the run-time default for functions
/// without a `sample` of their own). On an impl block, it applies to every fn in it.
///
/// ```
/// use fnmetrics::measured;
///
/// #[measured(sample = 64)]
/// fn parse_byte(b: u8) -> Result<u8, ()> {
///     if b.is_ascii_digit() { Ok(b - b'0') } else { Err(()) }
/// }
///
/// fn main() {
///     for b in 0..=255u8 {
///         let _ = parse_byte(b);
///     }
///     let m = fnmetrics::get(concat!(module_path!(), "::parse_byte")).unwrap();
///     assert_eq!((m.calls, m.errors), (256, 246));
///     assert!(m.timed < m.calls);
/// }
/// ```
///
/// # Async functions
///
/// `async fn` (free, in impls, in traits and trait impls) keep their signature; the measurement
/// covers the body from its first poll to its end, including the time the future waits.
///
/// `#[async_trait]` methods work too, whichever attribute comes first: once `#[async_trait]` has
/// expanded, the method is a plain fn returning `Box::pin(async move { .. })`, measured as below.
///
/// ```
/// use async_trait::async_trait;
/// use fnmetrics::measured;
///
/// #[async_trait]
/// trait Store {
///     async fn get(&self, key: u32) -> Result<String, String>;
/// }
///
/// struct Memory;
///
/// #[async_trait]
/// impl Store for Memory {
///     #[measured]
///     async fn get(&self, key: u32) -> Result<String, String> {
///         Ok(key.to_string())
///     }
/// }
/// ```
///
/// # Functions returning a future
///
/// A plain `fn` returning a future is measured like an `async fn`: from the future's first poll
/// to its completion, its output judged like an `async fn`'s return value, `cancelled` when the
/// future is dropped after a poll and before completion, nothing when it is never polled (making
/// the future is not a call). The future grows by 24 bytes, as an `async fn`'s does; nothing is
/// allocated.
///
/// - `-> impl Future<Output = T>`, with nothing else than `Send`, `Sync`, `Unpin` and lifetimes
///   beside (also in traits, the shape `trait_variant` writes): whatever future the body returns
///   (an `async` block, a call) is wrapped in a future that measures it.
/// - `-> Pin<Box<dyn Future<Output = T> + ..>>`, `BoxFuture<'_, T>`, `LocalBoxFuture<'_, T>`:
///   every future the body returns through `Box::pin(fut)` or `fut.boxed()` (in its tail, in
///   `if`/`match` branches, in `return`s) is wrapped inside the box.
/// - Otherwise (a boxed future that comes from another call, `impl Future + OtherTrait`, a
///   future type by name) the call is measured as a sync call: the time to make the future,
///   never an error. Wrapping those would need a second allocation or a different type.
///
/// ```
/// use fnmetrics::measured;
/// use std::future::Future;
/// use std::pin::Pin;
///
/// #[measured]
/// fn fetch(id: u32) -> impl Future<Output = Result<String, String>> + Send {
///     async move { if id == 0 { Err("no id 0".to_owned()) } else { Ok(id.to_string()) } }
/// }
///
/// #[measured]
/// fn fetch_boxed(id: u32) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> {
///     if id == 0 {
///         return Box::pin(async { Err("no id 0".to_owned()) });
///     }
///     let future = async move { Ok(id.to_string()) };
///     Box::pin(future)
/// }
///
/// fn main() {
///     let unpolled = fetch(1);
///     drop(unpolled); // Never polled: not a call.
///     pollster::block_on(fetch(0)).unwrap_err();
///     pollster::block_on(fetch_boxed(0)).unwrap_err();
///     let m = fnmetrics::get(concat!(module_path!(), "::fetch")).unwrap();
///     assert_eq!((m.calls, m.errors), (1, 1));
///     let m = fnmetrics::get(concat!(module_path!(), "::fetch_boxed")).unwrap();
///     assert_eq!((m.calls, m.errors), (1, 1));
/// }
/// ```
///
/// # Impl blocks
///
/// On an `impl` block (inherent or of a trait), `#[measured]` measures every fn in it, each named
/// as its own `#[measured]` would name it (see Names). Methods with a `#[measured]` of their own
/// keep it (with its arguments); `const fn`s are left alone. On an impl block only `crate = path`
/// and `sample = N` are accepted.
///
/// ```
/// use fnmetrics::measured;
///
/// struct Repo;
///
/// #[measured]
/// impl Repo {
///     fn load(&self, id: u64) -> Result<u64, String> {
///         Ok(id)
///     }
///
///     #[measured(name = "repo.save")]
///     fn save(&self) {}
/// }
/// ```
///
/// # Re-exports
///
/// Generated code names the runtime `::fnmetrics::__private`. A crate re-exporting fnmetrics
/// under another path says where it is with `crate = path`:
///
/// ```
/// mod telemetry {
///     pub use ::fnmetrics as metrics;
///     pub use ::fnmetrics::measured;
/// }
///
/// #[telemetry::measured(crate = telemetry::metrics)]
/// fn handle() {}
///
/// fn main() {
///     handle();
///     assert_eq!(fnmetrics::get(concat!(module_path!(), "::handle")).unwrap().calls, 1);
/// }
/// ```
///
/// # Turning it off
///
/// - At run time: `fnmetrics::set_enabled(false)` stops recording in the whole process (a
///   measured call then costs its clock reads and one relaxed load); `set_enabled(true)` resumes.
/// - At compile time: the `disabled` feature of `fnmetrics` makes `#[measured]` give every item
///   back exactly as written (its arguments are still checked): no site, no guard, no cost, the
///   same signatures and future types. Like `log`'s `max_level_off`, it is for applications: any
///   crate turning it on turns measuring off in the whole build. So is `cargo --all-features`.
///
/// # What it expands to
///
/// The signature is written back unchanged (attributes, visibility, `async`, `unsafe`, ABI,
/// generics, where clause); the body becomes, for a sync function:
///
/// ```text
/// fn load(id: u64) -> Result<String, NotFound> {
///     fn __fnmetrics_call<R>(body: impl FnOnce() -> R) -> R { body() }
///     fn __fnmetrics_item() -> &'static str { type_name_of_val(&__fnmetrics_item) }
///     static __FNMETRICS_SITE: ::fnmetrics::__private::Site =
///         ::fnmetrics::__private::Site::path(__fnmetrics_item, module_path!(), "load");
///     let guard = ::fnmetrics::__private::Guard::start(&__FNMETRICS_SITE);
///     let ret = __fnmetrics_call(move || -> Result<String, NotFound> { /* the body */ });
///     let err = /* is `ret` an `Err`? or `error_if`/`ok_if` */;
///     guard.finish(err);
///     ret
/// }
/// ```
///
/// The body runs in a `move` closure so that `return` and `?` leave the closure and the value can
/// be looked at; the closure is typed with the declared return type (`()` when there is none), so
/// type errors point at the signature as before and nothing else guides inference. Whether the
/// value is an `Err` is read from its type after the fact (autoref specialisation), so it never
/// changes what the body infers. An `async fn` awaits its body as an inner `async move` block,
/// typed before the body's own block (so a `use` in the body cannot shadow the type); a dropped
/// future drops the unfinished guard, which records the cancellation (or, while unwinding, the
/// panic). A function returning a future returns it inside `__private::Instrumented`, which holds
/// the guard. A `-> !` function only starts a guard before its body.
///
/// Generated code uses absolute paths only (`::fnmetrics::__private`, `::core`) and local names
/// that the function's own code cannot see, so shadowing `Result`, `Option`, `Box`, `core` or
/// `fnmetrics` is fine.
///
/// # Compile errors
///
/// One mistake gives one error, at the offending token, and the item is left as it was:
///
/// - an unknown or repeated argument, an empty or too long `name` (for a constant: at compile
///   time, at the constant's path);
/// - `#[measured]` on a `const fn` (the clock cannot be read at compile time), on a fn without a
///   body, or on anything that is not a fn or an impl block;
/// - `name`, `error_if` or `ok_if` on an impl block; `error_if`/`ok_if` on a `-> !` function;
///   an `error_if`/`ok_if` that is not a `fn(&R) -> bool`;
/// - `#[measured]` twice on one function.
///
/// # Limitations
///
/// - In a sync `#[track_caller]` function the body runs in a closure, so
///   `std::panic::Location::caller()` in the body gives a location inside the function rather
///   than its caller's.
#[proc_macro_attribute]
pub fn measured(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    match expand::measured(args.into(), item.clone()) {
        Ok(tokens) => tokens.into(),
        Err(error) => {
            // The item goes out unchanged beside the error, so that one mistake is one error.
            let mut tokens = error.to_compile_error();
            tokens.extend(item);
            tokens.into()
        }
    }
}
