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
/// load_user(1).unwrap();
/// load_user(0).unwrap_err();
///
/// let m = fnmetrics::get(concat!(module_path!(), "::load_user")).unwrap();
/// assert_eq!((m.calls, m.errors), (2, 1));
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
/// - A function is named `<module path>::<fn name>`, like `my_app::db::load_user`.
/// - A method (a fn with a `self` receiver of any kind: `self`, `&self`, `&mut self`,
///   `self: Box<Self>`, ...) is named after its `Self` type: `<path of the type>::<method>`,
///   where the path is where the type is defined (`std::any::type_name`) without generic
///   arguments, so `Repo<u8>` and `Repo<String>` share `my_app::db::Repo::load`.
/// - An associated function without a receiver has no `Self` value to name: it is named like a
///   function, `<module path>::<fn name>`.
/// - `name = "..."` sets the name (1 to 256 bytes).
///
/// ```
/// use fnmetrics::measured;
///
/// struct Cache;
///
/// impl Cache {
///     #[measured]
///     fn lookup(&self, key: &str) -> Option<u64> {
///         None
///     }
///
///     #[measured(name = "cache.flush")]
///     fn flush(&mut self) {}
/// }
///
/// Cache.lookup("a");
/// Cache.flush();
/// let lookup = format!("{}::lookup", std::any::type_name::<Cache>());
/// assert!(fnmetrics::get(&lookup).is_some());
/// assert!(fnmetrics::get("cache.flush").is_some());
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
/// # Async functions
///
/// `async fn` (free, in impls, in traits and trait impls) keep their signature; the measurement
/// covers the body from its first poll to its end, including the time the future waits.
///
/// `#[async_trait]` methods work too, whichever attribute comes first: when `#[async_trait]` sits
/// on the impl it expands first and turns the method into a plain fn returning
/// `Box::pin(async move { .. })`; `#[measured]` recognises that shape (a body ending in a call of a
/// path ending in `pin` on an `async` block) and measures the async block, so cancellation is
/// seen. A hand-written function of that shape is measured the same way.
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
/// # Impl blocks
///
/// On an `impl` block (inherent or of a trait), `#[measured]` measures every fn in it, named
/// `<module path>::<Self type>::<fn>` with the `Self` type as written, its last path segment
/// without generic arguments (`impl<T> Display for db::Repo<T>` gives `<module path>::Repo::fmt`).
/// Methods with a `#[measured]` of their own keep it (with its arguments); `const fn`s are left
/// alone. On an impl block only `crate = path` is accepted.
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
/// #[telemetry::measured(crate = crate::telemetry::metrics)]
/// fn handle() {}
///
/// fn main() {
///     handle();
///     assert_eq!(fnmetrics::get(concat!(module_path!(), "::handle")).unwrap().calls, 1);
/// }
/// ```
///
/// # What it expands to
///
/// The signature is written back unchanged (attributes, visibility, `async`, `unsafe`, ABI,
/// generics, where clause); the body becomes, for a sync function:
///
/// ```text
/// fn load(id: u64) -> Result<String, NotFound> {
///     fn __fnmetrics_call<R>(body: impl FnOnce() -> R) -> R { body() }
///     static __FNMETRICS_SITE: ::fnmetrics::__private::Site =
///         ::fnmetrics::__private::Site::new(concat!(module_path!(), "::load"));
///     let guard = ::fnmetrics::__private::Guard::start(&__FNMETRICS_SITE);
///     let ret = __fnmetrics_call(move || -> Result<String, NotFound> { /* the body */ });
///     let err = /* is `ret` an `Err`? or `error_if`/`ok_if` */;
///     guard.finish(err);
///     ret
/// }
/// ```
///
/// The body runs in a `move` closure so that `return` and `?` leave the closure and the value can
/// be looked at; the closure is typed with the declared return type, so type errors point at the
/// signature as before. An `async fn` awaits its body as an inner `async move` block instead; a
/// dropped future drops the unfinished guard, which records the cancellation (or, while
/// unwinding, the panic). A `-> !` function only starts a guard before its body.
///
/// Generated code uses absolute paths only (`::fnmetrics::__private`, `::core`) and local names
/// that the function's own code cannot see, so shadowing `Result`, `Option`, `Box`, `core` or
/// `fnmetrics` is fine.
///
/// # Compile errors
///
/// One mistake gives one error, at the offending token, and the item is left as it was:
///
/// - an unknown or repeated argument, an empty or too long `name`;
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
