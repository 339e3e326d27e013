//! The default metric name of a function, from where the compiler says it is.
//!
//! `#[measured]` declares an item in the function's body and passes its path, as
//! `std::any::type_name_of_val` prints it, to the site. That path says what a macro cannot see: the
//! impl block around a method (inherent or of which trait, for which type). Its text is not
//! guaranteed by the compiler, so it is read leniently and normalised into the scheme below, which
//! does not depend on how the compiler chooses to print a path:
//!
//! - a free function: `<module path>::<fn>`; a fn declared in a fn: `<module path>::<outer>::<fn>`;
//! - an inherent method or associated function: `<type path>::<fn>`;
//! - a trait impl's method: `<module path>::<<type> as <trait>>::<fn>`, the module being the
//!   impl's; a trait's default method: the same with the type it is called on, in the trait's
//!   module.
//!
//! In types, paths inside the module are written from it (`db::Order`, not `my_app::db::Order`),
//! paths into `core`, `alloc` and `std` by their last segment (`Vec`, `Display`), lifetimes are
//! left out, and generic arguments that are all parameters of the impl are left out
//! (`impl<T> Repo<T>` gives `Repo`, `impl Repo<u8>` gives `Repo<u8>`).

/// The metric name of function `function`, declared in module `module`, whose body holds an item
/// the compiler names `item`; `self_type` is `std::any::type_name::<Self>()` for a method.
pub(super) fn function_name(
    item: &str,
    module: &str,
    function: &str,
    self_type: Option<&str>,
) -> String {
    let mut segments: Vec<&str> = split(item, "::")
        .into_iter()
        .filter(|segment| *segment != "{{closure}}")
        .collect();
    segments.pop(); // The item.
    if segments.pop() != Some(function) {
        // Not a shape this module knows: the module path is still right.
        return format!("{module}::{function}");
    }
    let Some(&owner) = segments.last() else {
        return format!("{module}::{function}");
    };
    if let Some(inner) = owner
        .strip_prefix("<impl ")
        .and_then(|s| s.strip_suffix('>'))
    {
        return match split_once(inner, " for ") {
            Some((tr, ty)) => trait_method(module, ty, tr, function),
            None => inherent(module, inner, function),
        };
    }
    if segments.len() == 1
        && let Some(inner) = owner.strip_prefix('<').and_then(|s| s.strip_suffix('>'))
    {
        return match split_once(inner, " as ") {
            Some((ty, tr)) => trait_method(module, ty, tr, function),
            None => inherent(module, inner, function),
        };
    }
    let owner = segments.join("::");
    match self_type {
        // A trait's default method: the owner is the trait, `Self` another type.
        Some(self_type) if base(self_type) != base(&owner) => {
            trait_method(module, self_type, &owner, function)
        }
        _ => inherent(module, &owner, function),
    }
}

/// `<type path>::<fn>`, or `<module>::<<type>>::<fn>` for a type that is not a path (`dyn Trait`).
fn inherent(module: &str, ty: &str, function: &str) -> String {
    let path = normalise(ty, None);
    let first = path.chars().next().unwrap_or(' ');
    let is_path = (first.is_alphanumeric() || first == '_')
        && !["dyn ", "fn(", "unsafe ", "extern "]
            .iter()
            .any(|prefix| path.starts_with(prefix));
    if is_path {
        format!("{path}::{function}")
    } else {
        format!("{module}::<{}>::{function}", normalise(ty, Some(module)))
    }
}

/// `<module>::<<type> as <trait>>::<fn>`.
fn trait_method(module: &str, ty: &str, tr: &str, function: &str) -> String {
    let (ty, tr) = (normalise(ty, Some(module)), normalise(tr, Some(module)));
    format!("{module}::<{ty} as {tr}>::{function}")
}

/// A type as printed by the compiler, in the form names use (see the module docs); paths are
/// written from `module` when given.
fn normalise(ty: &str, module: Option<&str>) -> String {
    let mut out = String::with_capacity(ty.len());
    let mut rest = ty;
    while let Some(c) = rest.chars().next() {
        if c == '\'' {
            // A lifetime, with the `, ` or ` ` after it.
            let end = rest[1..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .map_or(rest.len(), |i| i + 1);
            rest = &rest[end..];
            rest = rest
                .strip_prefix(", ")
                .or_else(|| rest.strip_prefix(' '))
                .unwrap_or(rest);
        } else if c.is_alphanumeric() || c == '_' {
            let end = path_end(rest);
            out.push_str(shorten(&rest[..end], module));
            rest = &rest[end..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    drop_inferred_arguments(out)
}

/// The length of the path at the start of `s`: identifiers joined by `::`.
fn path_end(s: &str) -> usize {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] >= 0x80 {
            i += 1;
        } else if s[i..].starts_with("::")
            && s[i + 2..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            i += 2;
        } else {
            break;
        }
    }
    i
}

/// `path` written from `module`, or by its last segment if it is in the standard library.
fn shorten<'a>(path: &'a str, module: Option<&str>) -> &'a str {
    if let Some(relative) = module
        .and_then(|module| path.strip_prefix(module))
        .and_then(|rest| rest.strip_prefix("::"))
    {
        return relative;
    }
    match path.split_once("::") {
        Some(("core" | "alloc" | "std", _)) => path.rsplit("::").next().unwrap_or(path),
        _ => path,
    }
}

/// Removes generic argument lists made only of `_` (the impl's own parameters) or of nothing
/// (lifetimes taken out): `Repo<_, _>` → `Repo`.
fn drop_inferred_arguments(mut ty: String) -> String {
    let mut from = 0;
    while let Some(open) = ty[from..].find('<').map(|i| i + from) {
        let Some(close) = matching(&ty, open) else {
            break;
        };
        let inner = &ty[open + 1..close];
        if split(inner, ", ")
            .iter()
            .all(|arg| matches!(*arg, "_" | ""))
        {
            ty.replace_range(open..=close, "");
            from = open;
        } else {
            from = open + 1;
        }
    }
    ty
}

/// The index of the `>` closing the `<` at `open`.
fn matching(s: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'<' | b'(' | b'[' => depth += 1,
            b'>' if i > 0 && bytes[i - 1] == b'-' => {}
            b'>' | b')' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// `s` split at every `separator` outside brackets.
fn split<'a>(s: &'a str, separator: &str) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some((head, tail)) = split_once(rest, separator) {
        parts.push(head);
        rest = tail;
    }
    parts.push(rest);
    parts
}

/// `s` split at its first `separator` outside brackets.
fn split_once<'a>(s: &'a str, separator: &str) -> Option<(&'a str, &'a str)> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'<' | b'(' | b'[' => depth += 1,
            b'>' if i > 0 && bytes[i - 1] == b'-' => {}
            b'>' | b')' | b']' => depth = depth.saturating_sub(1),
            _ if depth == 0 && s[i..].starts_with(separator) => {
                return Some((&s[..i], &s[i + separator.len()..]));
            }
            _ => {}
        }
    }
    None
}

/// A type's path without generic arguments: `a::B<C>` → `a::B`.
fn base(ty: &str) -> &str {
    ty.split('<').next().unwrap_or(ty)
}

#[cfg(test)]
mod tests {
    use super::function_name;

    /// The name for `item` = `<path>::f::here` as the compiler prints it.
    fn name(path: &str, module: &str, self_type: Option<&str>) -> String {
        function_name(&format!("{path}::f::here"), module, "f", self_type)
    }

    #[test]
    fn free_and_nested_functions() {
        assert_eq!(name("app::db", "app::db", None), "app::db::f");
        assert_eq!(name("app::db::outer", "app::db", None), "app::db::outer::f");
        // An async fn's items are in its closure.
        let async_item = function_name("app::db::f::{{closure}}::here", "app::db", "f", None);
        assert_eq!(async_item, "app::db::f");
    }

    #[test]
    fn inherent_impls_are_named_after_the_type() {
        assert_eq!(name("app::Pool", "app", None), "app::Pool::f");
        assert_eq!(
            name("app::Cache", "app", Some("app::Cache")),
            "app::Cache::f"
        );
        assert_eq!(name("app::G<_>", "app", Some("app::G<u8>")), "app::G::f");
        assert_eq!(name("app::W<'_, _>", "app", None), "app::W::f");
        assert_eq!(name("app::W<'_, u8>", "app", None), "app::W<u8>::f");
        assert_eq!(
            name("app::W<'_, [u8; N]>", "app", None),
            "app::W<[u8; N]>::f"
        );
        // An impl in another module than its type's.
        assert_eq!(
            name("app::m::inner::<impl app::m::Money>", "app::m::inner", None),
            "app::m::Money::f"
        );
        assert_eq!(
            name("<dyn app::m::Tr>", "app::m", None),
            "app::m::<dyn Tr>::f"
        );
    }

    #[test]
    fn trait_impls_say_which_trait() {
        let display = name(
            "app::<impl core::fmt::Display for app::m::Money>",
            "app",
            Some("app::m::Money"),
        );
        let debug = name(
            "app::<impl core::fmt::Debug for app::m::Money>",
            "app",
            None,
        );
        assert_eq!(display, "app::<m::Money as Display>::f");
        assert_eq!(debug, "app::<m::Money as Debug>::f");
        assert_eq!(
            name(
                "<alloc::vec::Vec<app::m::Order> as app::m::Summary>",
                "app::m",
                None
            ),
            "app::m::<Vec<Order> as Summary>::f"
        );
        assert_eq!(
            name(
                "<alloc::vec::Vec<app::m::User> as app::m::Summary>",
                "app::m",
                None
            ),
            "app::m::<Vec<User> as Summary>::f"
        );
        assert_eq!(
            name("<app::X as core::convert::From<(_,)>>", "app", None),
            "app::<X as From<(_,)>>::f"
        );
        assert_eq!(
            name("<core::option::Option<_> as app::Summary>", "app", None),
            "app::<Option as Summary>::f"
        );
        assert_eq!(
            name("<&str as app::Summary>", "app", None),
            "app::<&str as Summary>::f"
        );
        assert_eq!(
            name(
                "app::<impl core::fmt::Display for alloc::boxed::Box<dyn app::Tr>>",
                "app",
                None
            ),
            "app::<Box<dyn Tr> as Display>::f"
        );
        assert_eq!(
            name(
                "<(F,) as app::Tr<dyn core::ops::function::Fn(u8) -> u8>>",
                "app",
                None
            ),
            "app::<(F,) as Tr<dyn Fn(u8) -> u8>>::f"
        );
    }

    #[test]
    fn default_methods_are_named_after_the_type_they_are_called_on() {
        assert_eq!(
            name("app::m::Greet", "app::m", Some("app::m::English")),
            "app::m::<English as Greet>::f"
        );
        assert_eq!(
            name("app::m::Greet", "app::m", Some("alloc::vec::Vec<u8>")),
            "app::m::<Vec<u8> as Greet>::f"
        );
    }

    #[test]
    fn unknown_shapes_fall_back_to_the_module() {
        assert_eq!(function_name("something else", "app", "f", None), "app::f");
        assert_eq!(function_name("", "app", "f", None), "app::f");
    }
}
