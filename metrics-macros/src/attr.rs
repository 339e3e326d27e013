//! The arguments of `#[measured(...)]`.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::{ExprPath, Ident, LitStr, Path, Token};

/// The value of `name = ..`: a string literal, or the path of a `&'static str` constant.
pub(crate) enum Name {
    Literal(LitStr),
    Const(ExprPath),
}

impl Parse for Name {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(LitStr) {
            let lit: LitStr = input.parse()?;
            check_name(&lit)?;
            Ok(Name::Literal(lit))
        } else if input.peek(Ident::peek_any) || input.peek(Token![::]) || input.peek(Token![<]) {
            Ok(Name::Const(input.parse()?))
        } else {
            Err(input.error("expected a string literal or the path of a `&str` constant"))
        }
    }
}

impl ToTokens for Name {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            Name::Literal(lit) => lit.to_tokens(tokens),
            Name::Const(path) => path.to_tokens(tokens),
        }
    }
}

/// The longest function name the registry keeps (`fnmetrics_core::MAX_NAME_LEN`; this crate does
/// not depend on the core, so the value is repeated here).
const MAX_NAME_LEN: usize = 256;

mod kw {
    syn::custom_keyword!(name);
    syn::custom_keyword!(error_if);
    syn::custom_keyword!(ok_if);
    syn::custom_keyword!(sample);
}

/// One argument's value together with the tokens of the whole `key = value`, so that an error
/// about the argument as such (duplicate, not allowed here) underlines all of it.
pub(crate) struct Arg<T> {
    pub(crate) value: T,
    whole: TokenStream,
}

impl<T> Arg<T> {
    /// An error spanned at the whole argument.
    pub(crate) fn error(&self, message: impl std::fmt::Display) -> syn::Error {
        syn::Error::new_spanned(&self.whole, message)
    }
}

/// `#[measured(name = "..", error_if = path, ok_if = path, sample = N, crate = path)]`, every
/// part optional.
#[derive(Default)]
pub(crate) struct Args {
    /// `name = "..."` or `name = CONST`: a fixed metric name instead of the function's path.
    pub(crate) name: Option<Arg<Name>>,
    /// `error_if = path`: `fn(&R) -> bool` deciding that a call failed.
    pub(crate) error_if: Option<Arg<ExprPath>>,
    /// `ok_if = path`: `fn(&R) -> bool` excusing a call the default rule counts as an error.
    pub(crate) ok_if: Option<Arg<ExprPath>>,
    /// `crate = path`: where the `fnmetrics` crate is, for re-exports.
    pub(crate) krate: Option<Arg<Path>>,
    /// `sample = N`: count every call, time about one in N.
    pub(crate) sample: Option<Arg<syn::LitInt>>,
}

/// The largest `sample = N` (`fnmetrics::MAX_SAMPLE`).
const MAX_SAMPLE: u32 = 1 << 20;

impl Args {
    /// `sample = N`'s N (checked when parsed).
    pub(crate) fn sample(&self) -> Option<u32> {
        self.sample
            .as_ref()
            .and_then(|arg| arg.value.base10_parse().ok())
    }

    /// The path of the `fnmetrics` crate in generated code.
    pub(crate) fn krate(&self) -> TokenStream {
        match &self.krate {
            Some(arg) => arg.value.to_token_stream(),
            None => quote!(::fnmetrics),
        }
    }
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = Args::default();
        while !input.is_empty() {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::name) {
                let key: kw::name = input.parse()?;
                let eq: Token![=] = input.parse()?;
                let value: Name = input.parse()?;
                set(&mut args.name, key, eq, value)?;
            } else if lookahead.peek(kw::error_if) {
                let key: kw::error_if = input.parse()?;
                let eq: Token![=] = input.parse()?;
                let value: ExprPath = input.parse()?;
                set(&mut args.error_if, key, eq, value)?;
            } else if lookahead.peek(kw::ok_if) {
                let key: kw::ok_if = input.parse()?;
                let eq: Token![=] = input.parse()?;
                let value: ExprPath = input.parse()?;
                set(&mut args.ok_if, key, eq, value)?;
            } else if lookahead.peek(kw::sample) {
                let key: kw::sample = input.parse()?;
                let eq: Token![=] = input.parse()?;
                let lit: syn::LitInt = input.parse()?;
                lit.base10_parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_SAMPLE).contains(n))
                    .ok_or_else(|| {
                        syn::Error::new(
                            lit.span(),
                            format!(
                                "`sample` takes a whole number from 1 (time every call) to \
                                 {MAX_SAMPLE}"
                            ),
                        )
                    })?;
                set(&mut args.sample, key, eq, lit)?;
            } else if lookahead.peek(Token![crate]) {
                let key: Token![crate] = input.parse()?;
                let eq: Token![=] = input.parse()?;
                let value = Path::parse_mod_style(input)?;
                set(&mut args.krate, key, eq, value)?;
            } else if input.peek(Ident::peek_any) {
                let unknown = input.call(Ident::parse_any)?;
                return Err(syn::Error::new(
                    unknown.span(),
                    format!(
                        "unknown argument `{unknown}`: #[measured] takes `name`, `error_if`, \
                         `ok_if`, `sample` and `crate`"
                    ),
                ));
            } else {
                return Err(lookahead.error());
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(args)
    }
}

/// Stores an argument, refusing a second one with the same key.
fn set<K: ToTokens, T: ToTokens>(
    slot: &mut Option<Arg<T>>,
    key: K,
    eq: Token![=],
    value: T,
) -> syn::Result<()> {
    let whole = quote!(#key #eq #value);
    if slot.is_some() {
        let key = key.to_token_stream();
        return Err(syn::Error::new_spanned(
            whole,
            format!("duplicate `{key}` argument"),
        ));
    }
    *slot = Some(Arg { value, whole });
    Ok(())
}

/// A metric name must be non-empty and fit the registry.
fn check_name(lit: &LitStr) -> syn::Result<()> {
    let name = lit.value();
    if name.is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            "the metric name must not be empty",
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "the metric name is {} bytes long; at most {MAX_NAME_LEN} are allowed",
                name.len()
            ),
        ));
    }
    Ok(())
}
