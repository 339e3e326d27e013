//! What `#[measured]` turns a function or an impl block into.
//!
//! Every measured function gets a `static` site (its name, registered on the first call) and, per
//! call, a guard started before the body and finished with the call's outcome after it:
//!
//! - sync: the body runs in a `move` closure called at once, so that `return` and `?` leave the
//!   closure, not the function, and the outcome can be looked at; a panic unwinds through the
//!   guard, whose `Drop` records it;
//! - async: the body is an inner `async move` block awaited by the function's own future, so a
//!   future dropped mid-await drops the guard and is recorded as cancelled;
//! - `-> !`: there is no outcome to look at, the guard only records a panic;
//! - `#[async_trait]` methods (a sync fn ending in `Box::pin(async move { .. })`): the async block
//!   is instrumented as an async body.

use crate::attr::{Arg, Args};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit_mut::{self, VisitMut};
use syn::{
    Attribute, Block, Expr, ExprAsync, ExprCall, ExprPath, ImplItem, Item, ItemImpl, LitStr,
    ReturnType, Signature, Stmt, TraitItemFn, Type,
};

/// The entry point: instruments `item` according to `args`.
pub(crate) fn measured(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let args: Args = syn::parse2(args)?;
    match syn::parse2::<Item>(item)? {
        Item::Fn(mut item) => {
            if let Some(again) = item.attrs.iter().find(|attr| is_measured(attr)) {
                return Err(syn::Error::new_spanned(
                    again,
                    "#[measured] is already applied to this function",
                ));
            }
            let plan = Plan::for_fn(&args, &item.sig);
            item.block = Box::new(instrument(&item.sig, &item.block, &plan)?);
            Ok(item.into_token_stream())
        }
        Item::Impl(item) => expand_impl(&args, item),
        Item::Verbatim(tokens) if syn::parse2::<TraitItemFn>(tokens.clone()).is_ok() => Err(
            syn::Error::new_spanned(tokens, "#[measured] needs a function with a body"),
        ),
        other => Err(syn::Error::new_spanned(
            other,
            "#[measured] can only be applied to functions and impl blocks",
        )),
    }
}

/// `#[measured]` on an impl block: every fn in it that is not `const` and has no `#[measured]` of
/// its own, named `<module path>::<Self type>::<fn>`.
fn expand_impl(args: &Args, mut item: ItemImpl) -> syn::Result<TokenStream> {
    const ONLY_CRATE: &str = "on an impl block #[measured] only takes `crate`; put this argument \
                              on a method's own #[measured]";
    if let Some(arg) = &args.name {
        return Err(arg.error(ONLY_CRATE));
    }
    if let Some(arg) = &args.error_if {
        return Err(arg.error(ONLY_CRATE));
    }
    if let Some(arg) = &args.ok_if {
        return Err(arg.error(ONLY_CRATE));
    }
    let self_type = type_label(&item.self_ty);
    for impl_item in &mut item.items {
        let ImplItem::Fn(method) = impl_item else {
            continue;
        };
        if method.sig.constness.is_some() || method.attrs.iter().any(is_measured) {
            continue;
        }
        let suffix = LitStr::new(
            &format!("::{self_type}::{}", unraw(&method.sig.ident)),
            Span::call_site(),
        );
        let plan = Plan {
            krate: args.krate(),
            site: SiteName::Fixed(quote!(::core::concat!(::core::module_path!(), #suffix))),
            error_if: None,
            ok_if: None,
        };
        method.block = instrument(&method.sig, &method.block, &plan)?;
    }
    Ok(item.into_token_stream())
}

/// How one function is measured.
struct Plan<'a> {
    /// The path of the `fnmetrics` crate.
    krate: TokenStream,
    site: SiteName,
    error_if: Option<&'a Arg<ExprPath>>,
    ok_if: Option<&'a Arg<ExprPath>>,
}

/// How a site finds its name.
enum SiteName {
    /// An expression of type `&'static str`.
    Fixed(TokenStream),
    /// A method: the name is the `Self` type's path then `::` then this, found on the first call.
    Method(String),
}

impl<'a> Plan<'a> {
    fn for_fn(args: &'a Args, sig: &Signature) -> Plan<'a> {
        let ident = unraw(&sig.ident);
        let site = match (&args.name, sig.receiver()) {
            (Some(name), _) => SiteName::Fixed(name.value.to_token_stream()),
            (None, Some(_)) => SiteName::Method(ident),
            (None, None) => {
                let suffix = LitStr::new(&format!("::{ident}"), Span::call_site());
                SiteName::Fixed(quote!(::core::concat!(::core::module_path!(), #suffix)))
            }
        };
        Plan {
            krate: args.krate(),
            site,
            error_if: args.error_if.as_ref(),
            ok_if: args.ok_if.as_ref(),
        }
    }

    /// The `static` site and the expression starting a guard on it.
    fn site_and_guard(&self) -> (TokenStream, TokenStream) {
        let krate = &self.krate;
        let (site, guard) = match &self.site {
            SiteName::Fixed(name) => (
                quote!(#krate::__private::Site::new(#name)),
                quote!(#krate::__private::Guard::start(&__FNMETRICS_SITE)),
            ),
            SiteName::Method(method) => (
                quote!(#krate::__private::Site::method(#method)),
                quote! {
                    #krate::__private::Guard::start_method(
                        &__FNMETRICS_SITE,
                        ::core::any::type_name::<Self>,
                    )
                },
            ),
        };
        let site = quote! {
            static __FNMETRICS_SITE: #krate::__private::Site = #site;
        };
        (site, guard)
    }

    /// The `bool` expression telling whether the call whose value is `ret`, of type `output`,
    /// failed.
    fn is_error(&self, ret: &Ident, output: &Output) -> TokenStream {
        let krate = &self.krate;
        let by_type = match output {
            // The signature does not say `Result`, and the hidden type may not be known yet.
            Output::Opaque => quote!(false),
            Output::Known(_) | Output::Unknown => quote! {{
                use #krate::__private::{OtherKind as _, ResultKind as _};
                (&#krate::__private::Probe(&#ret)).__fnmetrics_is_err()
            }},
        };
        // When the type can be written, `error_if` and `ok_if` are checked to be
        // `fn(&R) -> bool`, so that a wrong one is reported at its path.
        let call = |arg: &Arg<ExprPath>| {
            let path = &arg.value;
            let span = path.span();
            let ret = local(&ret.to_string(), span);
            let ty = match output {
                Output::Known(ty) => ty.clone(),
                Output::Opaque => quote!(_),
                Output::Unknown => return quote_spanned!(span=> #path(&#ret)),
            };
            let test = local("__fnmetrics_test", span);
            quote_spanned! {span=> {
                let #test: fn(&#ty) -> ::core::primitive::bool = #path;
                #test(&#ret)
            }}
        };
        match (self.error_if, self.ok_if) {
            (None, None) => by_type,
            (Some(error_if), None) => call(error_if),
            (None, Some(ok_if)) => {
                let ok_if = call(ok_if);
                quote!(#by_type && !#ok_if)
            }
            (Some(error_if), Some(ok_if)) => {
                let (error_if, ok_if) = (call(error_if), call(ok_if));
                quote!(#error_if && !#ok_if)
            }
        }
    }
}

/// What the generated code knows of a function's return type.
enum Output {
    /// The type, written with `_` for any `impl Trait` in it.
    Known(TokenStream),
    /// `impl Trait`.
    Opaque,
    /// Nothing (`#[async_trait]` moved it into a boxed future's type).
    Unknown,
}

/// A local variable of generated code: `mixed_site`, so that the user's code cannot see it nor it
/// the user's, reported at `span`.
fn local(name: &str, span: Span) -> Ident {
    Ident::new(name, Span::mixed_site().located_at(span))
}

/// The instrumented body of the function with signature `sig` and body `block`.
fn instrument(sig: &Signature, block: &Block, plan: &Plan<'_>) -> syn::Result<Block> {
    if let Some(constness) = &sig.constness {
        return Err(syn::Error::new(
            constness.span,
            "#[measured] cannot be applied to a `const fn`: measuring reads the clock, which \
             cannot be done at compile time",
        ));
    }
    let (site, start) = plan.site_and_guard();
    let guard = local("__fnmetrics_guard", Span::call_site());
    let ret = local("__fnmetrics_ret", Span::call_site());
    let err = local("__fnmetrics_err", Span::call_site());
    // After the call: decide, record, return.
    let finish = |output: &Output| {
        let is_error = plan.is_error(&ret, output);
        quote! {
            let #err: ::core::primitive::bool = #is_error;
            #guard.finish(#err);
            #ret
        }
    };
    let output = match &sig.output {
        ReturnType::Type(_, ty) => match infer_impl_trait(ty) {
            Some(ty) => Output::Known(ty.into_token_stream()),
            None => Output::Opaque,
        },
        ReturnType::Default => Output::Known(quote!(())),
    };

    let body = if matches!(&sig.output, ReturnType::Type(_, ty) if is_never(ty)) {
        if let Some(arg) = plan.error_if.or(plan.ok_if) {
            return Err(
                arg.error("this function never returns, so there is no return value to test")
            );
        }
        // Nothing to look at: the guard is only ever dropped, by a panic.
        let stmts = &block.stmts;
        quote! {
            #site
            let #guard = #start;
            #(#stmts)*
        }
    } else if sig.asyncness.is_some() {
        let future = typed_async_block(&block.stmts, &sig.output);
        let finish = finish(&output);
        quote! {
            #site
            let #guard = #start;
            let #ret = #future.await;
            #finish
        }
    } else if let Some((call, future)) = async_trait_future(block) {
        // `#[async_trait]` made this body `Box::pin(async move { .. })`, its async block already
        // typed: wrap that block in one holding the guard.
        let prefix = &block.stmts[..block.stmts.len() - 1];
        let pin = &call.func;
        let finish = finish(&Output::Unknown);
        quote! {
            #site
            #(#prefix)*
            #pin(async move {
                let #guard = #start;
                let #ret = #future.await;
                #finish
            })
        }
    } else {
        // `FnOnce` asked of the closure makes it one, so that it can return what it borrows
        // from a captured `&mut` (an `FnMut` closure cannot); calling it in place would not ask.
        let call = local("__fnmetrics_call", Span::call_site());
        let closure_output = match (&sig.output, &output) {
            (ReturnType::Type(arrow, _), Output::Known(ty)) => quote!(#arrow #ty),
            (ReturnType::Type(..), _) => quote!(-> _),
            (ReturnType::Default, _) => TokenStream::new(),
        };
        let finish = finish(&output);
        quote! {
            #[inline(always)]
            fn #call<__FnmetricsR>(
                __fnmetrics_body: impl ::core::ops::FnOnce() -> __FnmetricsR,
            ) -> __FnmetricsR {
                __fnmetrics_body()
            }
            #site
            let #guard = #start;
            // An `impl Trait` body that only panics (`todo!()`) is of type `!` in edition 2024.
            #[allow(clippy::diverging_sub_expression)]
            let #ret = #call(move || #closure_output #block);
            #finish
        }
    };
    // The new body as one verbatim statement: nothing to parse again.
    Ok(Block {
        brace_token: block.brace_token,
        stmts: vec![Stmt::Expr(Expr::Verbatim(body), None)],
    })
}

/// `async move { <stmts> }`, its output typed as the function's return type (when that can be
/// written) so that `return` values and `?` errors are converted as in the function itself.
fn typed_async_block(stmts: &[Stmt], output: &ReturnType) -> TokenStream {
    let typing = match output {
        ReturnType::Type(_, ty) => infer_impl_trait(ty).map(|ty| {
            // The first `return` sets the block's output type (async_trait does the same); at
            // the return type's span, a wrong value in the body is reported against it.
            let span = ty.span();
            let value = local("__fnmetrics_value", span);
            quote_spanned! {span=>
                if let ::core::option::Option::Some(#value) = ::core::option::Option::None::<#ty> {
                    return #value;
                }
            }
        }),
        ReturnType::Default => None,
    };
    quote!(async move { #typing #(#stmts)* })
}

/// The call and its async block if `block` ends in `<path ending in pin>(async { .. })`, which is
/// how `#[async_trait]` (expanded before us when it sits on the impl) writes an async method.
fn async_trait_future(block: &Block) -> Option<(&ExprCall, &ExprAsync)> {
    let Some(Stmt::Expr(Expr::Call(call), None)) = block.stmts.last() else {
        return None;
    };
    let Expr::Path(func) = &*call.func else {
        return None;
    };
    if func.path.segments.last()?.ident != "pin" || call.args.len() != 1 {
        return None;
    }
    match &call.args[0] {
        Expr::Async(future) => Some((call, future)),
        _ => None,
    }
}

/// Whether `ty` is `!`.
fn is_never(ty: &Type) -> bool {
    match ty {
        Type::Never(_) => true,
        Type::Group(group) => is_never(&group.elem),
        Type::Paren(paren) => is_never(&paren.elem),
        _ => false,
    }
}

/// `ty` with every `impl Trait` in it replaced by `_`, or `None` if it is an `impl Trait`.
fn infer_impl_trait(ty: &Type) -> Option<Type> {
    struct ImplToInfer;
    impl VisitMut for ImplToInfer {
        fn visit_type_mut(&mut self, ty: &mut Type) {
            if let Type::ImplTrait(impl_trait) = ty {
                *ty = Type::Infer(syn::TypeInfer {
                    underscore_token: syn::Token![_](impl_trait.impl_token.span),
                });
            } else {
                visit_mut::visit_type_mut(self, ty);
            }
        }
    }
    let mut ty = ty.clone();
    ImplToInfer.visit_type_mut(&mut ty);
    let mut bare = &ty;
    while let Type::Group(syn::TypeGroup { elem, .. }) | Type::Paren(syn::TypeParen { elem, .. }) =
        bare
    {
        bare = elem;
    }
    match bare {
        Type::Infer(_) => None,
        _ => Some(ty),
    }
}

/// The `Self` type of an impl as used in names: the last path segment without generics
/// (`crate::db::Repo<T>` → `Repo`), references dropped.
fn type_label(ty: &Type) -> String {
    match ty {
        Type::Path(path) if path.qself.is_none() => match path.path.segments.last() {
            Some(segment) => unraw(&segment.ident),
            None => String::new(),
        },
        Type::Reference(reference) => type_label(&reference.elem),
        Type::Ptr(pointer) => type_label(&pointer.elem),
        Type::Group(group) => type_label(&group.elem),
        Type::Paren(paren) => type_label(&paren.elem),
        Type::Slice(slice) => format!("[{}]", type_label(&slice.elem)),
        Type::Array(array) => format!(
            "[{}; {}]",
            type_label(&array.elem),
            array.len.to_token_stream()
        ),
        Type::Tuple(tuple) => {
            let elems: Vec<String> = tuple.elems.iter().map(type_label).collect();
            format!("({})", elems.join(", "))
        }
        other => other.to_token_stream().to_string(),
    }
}

/// Whether `attr` is `#[measured]` (by any path ending in `measured`).
fn is_measured(attr: &Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|segment| segment.ident == "measured")
}

/// An identifier as it is named in paths: `r#type` → `type`.
fn unraw(ident: &Ident) -> String {
    let ident = ident.to_string();
    match ident.strip_prefix("r#") {
        Some(raw) => raw.to_owned(),
        None => ident,
    }
}
