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
//! - a sync fn returning a future: `-> impl Future<Output = T>` (with only auto traits and
//!   lifetimes besides) returns the body's future inside `__private::Instrumented`, which starts
//!   the guard at the first poll and finishes it at `Ready`; `-> Pin<Box<dyn Future<..>>>` (and
//!   `BoxFuture`) has each future it returns through `Box::pin(..)` or `.boxed()` wrapped inside
//!   the box, so no allocation is added. Other returns of a boxed future are measured as a sync
//!   call. `#[async_trait]` methods, once expanded, are of the boxed shape;
//! - `-> !`: there is no outcome to look at, the guard only records a panic.
//!
//! Nothing here may change how the function's own code is type-checked: a declared return type
//! is written only outside the function's block (so a `use` in it cannot shadow it), and it is
//! the only type the expansion adds; the error probe only reads the already-typed value.

use crate::attr::{Arg, Args, Name};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit_mut::{self, VisitMut};
use syn::{
    Attribute, Block, Expr, ExprPath, GenericArgument, ImplItem, Item, ItemImpl, PathArguments,
    ReturnType, Signature, Stmt, TraitItemFn, Type, TypeParamBound,
};

/// The entry point: instruments `item` according to `args`. With the `disabled` feature the item
/// is checked the same way, then given back unchanged.
pub(crate) fn measured(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let expanded = expand(args, item.clone())?;
    if cfg!(feature = "disabled") {
        return Ok(item);
    }
    Ok(expanded)
}

fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
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
/// its own, measured and named as if it had its own `#[measured]`.
fn expand_impl(args: &Args, mut item: ItemImpl) -> syn::Result<TokenStream> {
    const ONLY_CRATE: &str = "on an impl block #[measured] only takes `crate` and `sample`; put \
                              this argument on a method's own #[measured]";
    if let Some(arg) = &args.name {
        return Err(arg.error(ONLY_CRATE));
    }
    if let Some(arg) = &args.error_if {
        return Err(arg.error(ONLY_CRATE));
    }
    if let Some(arg) = &args.ok_if {
        return Err(arg.error(ONLY_CRATE));
    }
    for impl_item in &mut item.items {
        let ImplItem::Fn(method) = impl_item else {
            continue;
        };
        if method.sig.constness.is_some() || method.attrs.iter().any(is_measured) {
            continue;
        }
        let plan = Plan::for_fn(args, &method.sig);
        method.block = instrument(&method.sig, &method.block, &plan)?;
    }
    Ok(item.into_token_stream())
}

/// How one function is measured.
struct Plan<'a> {
    /// The path of the `fnmetrics` crate.
    krate: TokenStream,
    site: SiteName<'a>,
    /// Whether the fn has a `self` receiver, so that `Self` can name a trait's default method
    /// after the type it is called on.
    receiver: bool,
    error_if: Option<&'a Arg<ExprPath>>,
    ok_if: Option<&'a Arg<ExprPath>>,
    /// `sample = N`.
    sample: Option<u32>,
}

/// How a site finds its name.
enum SiteName<'a> {
    /// `name = ..`.
    Fixed(&'a Name),
    /// Where the function is (see `fnmetrics_core`'s `site/naming.rs`), found on the first call;
    /// this is the function's name.
    Path(String),
}

impl<'a> Plan<'a> {
    fn for_fn(args: &'a Args, sig: &Signature) -> Plan<'a> {
        let site = match &args.name {
            Some(name) => SiteName::Fixed(&name.value),
            None => SiteName::Path(unraw(&sig.ident)),
        };
        Plan {
            krate: args.krate(),
            site,
            receiver: sig.receiver().is_some(),
            error_if: args.error_if.as_ref(),
            ok_if: args.ok_if.as_ref(),
            sample: args.sample(),
        }
    }

    /// The `static` site (and what it needs) and the expression starting a guard on it.
    fn site_and_guard(&self) -> (TokenStream, TokenStream) {
        let krate = &self.krate;
        let start = match self.sample {
            Some(every) => {
                quote!(#krate::__private::Guard::start_sampled(&__FNMETRICS_SITE, #every))
            }
            None => quote!(#krate::__private::Guard::start(&__FNMETRICS_SITE)),
        };
        match &self.site {
            SiteName::Fixed(Name::Literal(name)) => (
                quote! {
                    static __FNMETRICS_SITE: #krate::__private::Site =
                        #krate::__private::Site::new(#name);
                },
                start,
            ),
            SiteName::Fixed(Name::Const(path)) => {
                // Typed once, at the path, so that a constant of another type is one error there.
                let span = path.span();
                let name = quote_spanned! {span=>
                    const __FNMETRICS_NAME: &::core::primitive::str = #path;
                    const _: () = ::core::assert!(
                        !__FNMETRICS_NAME.is_empty()
                            && __FNMETRICS_NAME.len() <= #krate::MAX_NAME_LEN,
                        "the metric name must be 1 to 256 bytes long",
                    );
                };
                let site = quote! {
                    #name
                    static __FNMETRICS_SITE: #krate::__private::Site =
                        #krate::__private::Site::new(__FNMETRICS_NAME);
                };
                (site, start)
            }
            SiteName::Path(function) => {
                // An item of the function's body: the compiler's path of it says where the
                // function is, impl block and trait included.
                let site = quote! {
                    fn __fnmetrics_item() -> &'static ::core::primitive::str {
                        ::core::any::type_name_of_val(&__fnmetrics_item)
                    }
                    static __FNMETRICS_SITE: #krate::__private::Site = #krate::__private::Site::path(
                        __fnmetrics_item,
                        ::core::module_path!(),
                        #function,
                    );
                };
                let start = match (self.receiver, self.sample) {
                    (true, Some(every)) => quote! {
                        #krate::__private::Guard::start_method_sampled(
                            &__FNMETRICS_SITE,
                            ::core::any::type_name::<Self>,
                            #every,
                        )
                    },
                    (true, None) => quote! {
                        #krate::__private::Guard::start_method(
                            &__FNMETRICS_SITE,
                            ::core::any::type_name::<Self>,
                        )
                    },
                    (false, _) => start,
                };
                (site, start)
            }
        }
    }

    /// The `bool` expression telling whether the call whose value is `ret`, of type `output`,
    /// failed; `ret` is a reference to the value when `by_ref`.
    fn is_error(&self, ret: &Ident, by_ref: bool, output: &Output) -> TokenStream {
        let reference = |ret: &Ident| match by_ref {
            true => quote!(#ret),
            false => quote!(&#ret),
        };
        let krate = &self.krate;
        let by_type = match output {
            // The signature does not say `Result`, and the hidden type may not be known yet.
            Output::Opaque => quote!(false),
            Output::Known(_) => {
                let ret = reference(ret);
                quote! {{
                    use #krate::__private::{OtherKind as _, ResultKind as _};
                    (&#krate::__private::Probe(#ret)).__fnmetrics_is_err()
                }}
            }
        };
        // `error_if` and `ok_if` are checked to be `fn(&R) -> bool`, so that a wrong one is
        // reported at its path.
        let call = |arg: &Arg<ExprPath>| {
            let path = &arg.value;
            let span = path.span();
            let ret = reference(&local(&ret.to_string(), span));
            let ty = output.ty();
            let test = local("__fnmetrics_test", span);
            quote_spanned! {span=> {
                let #test: fn(&#ty) -> ::core::primitive::bool = #path;
                #test(#ret)
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

/// What the generated code knows of the type of the value it classifies.
enum Output {
    /// The type, written with `_` for any `impl Trait` in it.
    Known(TokenStream),
    /// `impl Trait`.
    Opaque,
}

impl Output {
    /// What is known of a value of type `ty`.
    fn of(ty: &Type) -> Output {
        match infer_impl_trait(ty) {
            Some(ty) => Output::Known(ty.into_token_stream()),
            None => Output::Opaque,
        }
    }

    /// The type as a closure parameter or a generic argument can write it.
    fn ty(&self) -> TokenStream {
        match self {
            Output::Known(ty) => ty.clone(),
            Output::Opaque => quote!(_),
        }
    }
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
    let krate = &plan.krate;
    let (site, start) = plan.site_and_guard();
    let guard = local("__fnmetrics_guard", Span::call_site());
    let ret = local("__fnmetrics_ret", Span::call_site());
    let err = local("__fnmetrics_err", Span::call_site());
    // After the call: decide, record, return.
    // A sampling site's usual call is not timed: `finish_sampled` is laid out for that.
    let finish_call = match plan.sample {
        Some(every) if every > 1 => quote!(finish_sampled),
        _ => quote!(finish),
    };
    let finish = |output: &Output| {
        let is_error = plan.is_error(&ret, false, output);
        quote! {
            let #err: ::core::primitive::bool = #is_error;
            #guard.#finish_call(#err);
            #ret
        }
    };
    // For a returned future: how to start its guard and judge its output.
    let start_fn = local("__fnmetrics_start", Span::call_site());
    let is_error_fn = local("__fnmetrics_is_error", Span::call_site());
    let future_parts = |output: &Output| {
        let ty = output.ty();
        let is_error = plan.is_error(&ret, true, output);
        quote! {
            #site
            let #start_fn = || #start;
            let #is_error_fn = |#ret: &#ty| -> ::core::primitive::bool { #is_error };
        }
    };
    let instrument = |future: &dyn ToTokens| quote!(#krate::__private::instrument(#future, #start_fn, #is_error_fn));
    // Calls the body closure: `FnOnce` asked of the closure makes it one, so that it can return
    // what it borrows from a captured `&mut` (an `FnMut` closure cannot); calling it in place
    // would not ask.
    let call = local("__fnmetrics_call", Span::call_site());
    let call_fn = quote! {
        #[inline(always)]
        fn #call<__FnmetricsR>(
            __fnmetrics_body: impl ::core::ops::FnOnce() -> __FnmetricsR,
        ) -> __FnmetricsR {
            __fnmetrics_body()
        }
    };
    let output = match &sig.output {
        ReturnType::Type(_, ty) => Output::of(ty),
        ReturnType::Default => Output::Known(quote!(())),
    };
    let returned = match &sig.output {
        ReturnType::Type(_, ty) => Some(&**ty),
        ReturnType::Default => None,
    };

    let body = if returned.is_some_and(is_never) {
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
        let (marker, future) = typed_async_block(block, &sig.output, &output, &plan.krate);
        let finish = finish(&output);
        quote! {
            #site
            #marker
            let #guard = #start;
            let #ret = #future.await;
            #finish
        }
    } else if let Some(future_output) = returned.and_then(impl_future_output) {
        // The body returns the future: wrap it, measured from its first poll.
        let parts = future_parts(&Output::of(future_output));
        let future = instrument(&quote!(#call(move || #block)));
        quote! {
            #call_fn
            #parts
            #future
        }
    } else if let Some(block) = returned
        .and_then(boxed_future_output)
        .and_then(|output| {
            let wrapped = wrap_boxed_futures(block, &|future| Expr::Verbatim(instrument(&future)))?;
            Some((output, wrapped))
        })
        .map(|(output, block)| {
            let parts = future_parts(&Output::of(output));
            // The tail, so that the return type still coerces each branch; in braces of ours,
            // as braces of the user's around a tail are linted as needless.
            let stmts = &block.stmts;
            quote! {
                #parts
                { #(#stmts)* }
            }
        })
    {
        block
    } else {
        let closure_output = match (&sig.output, &output) {
            (ReturnType::Type(arrow, _), Output::Known(ty)) => quote!(#arrow #ty),
            (ReturnType::Type(..), Output::Opaque) => quote!(-> _),
            // Written, so that a tail generic over its type is not inferred from the probe.
            (ReturnType::Default, _) => quote!(-> ()),
        };
        let finish = finish(&output);
        quote! {
            #call_fn
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

/// `async move { <typing> <the block's statements> }`: the block's output typed as the
/// function's return type, so that `return` values and `?` errors are converted as in the
/// function itself. Returns a statement to put before it, and the async block.
///
/// The first `return` of an async block sets its output type (async_trait does the same). The
/// type is written in a marker made before the async block, outside the function's block, so
/// that a `use` in the block cannot shadow it; at the return type's span, so that a wrong value
/// is reported against it. Without `->`, the type is `()`. The block's statements go in the
/// async block's own braces: the user's braces around a one-expression tail would be linted as
/// needless (`unused_braces`), and its suggested fix does not compile.
fn typed_async_block(
    block: &Block,
    output: &ReturnType,
    known: &Output,
    krate: &TokenStream,
) -> (TokenStream, TokenStream) {
    let (ty, span) = match (output, known) {
        (ReturnType::Type(_, ty), Output::Known(known)) => (known.clone(), ty.span()),
        (ReturnType::Default, _) => (quote!(()), block.brace_token.span.open()),
        (ReturnType::Type(..), Output::Opaque) => return (quote!(), quote!(async move #block)),
    };
    let marker = local("__fnmetrics_output", span);
    let value = local("__fnmetrics_value", span);
    let stmts = &block.stmts;
    let before = quote_spanned! {span=>
        let #marker = #krate::__private::OutputOf::<#ty>::new();
    };
    let future = quote_spanned! {span=>
        async move {
            if let ::core::option::Option::Some(#value) = #krate::__private::no_value(#marker) {
                return #value;
            }
            #(#stmts)*
        }
    };
    (before, future)
}

/// `T` if `ty` is `impl Future<Output = T>`, with nothing else than `Send`, `Sync`, `Unpin`,
/// lifetimes and `use<..>` beside: what the wrapping future also is.
fn impl_future_output(ty: &Type) -> Option<&Type> {
    let Type::ImplTrait(impl_trait) = ungroup(ty) else {
        return None;
    };
    let mut output = None;
    for bound in &impl_trait.bounds {
        match bound {
            TypeParamBound::Trait(bound)
                if matches!(bound.modifier, syn::TraitBoundModifier::None)
                    && bound.lifetimes.is_none() =>
            {
                let segment = bound.path.segments.last()?;
                if segment.ident == "Future" {
                    output = Some(future_output(&segment.arguments)?);
                } else if !(["Send", "Sync", "Unpin"].iter().any(|t| segment.ident == t)
                    && segment.arguments.is_none())
                {
                    return None;
                }
            }
            TypeParamBound::Lifetime(_) | TypeParamBound::PreciseCapture(_) => {}
            _ => return None,
        }
    }
    output
}

/// `T` if `ty` is `Pin<Box<dyn Future<Output = T> ..>>`, `BoxFuture<'_, T>` or
/// `LocalBoxFuture<'_, T>`.
fn boxed_future_output(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ungroup(ty) else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    let segment = path.path.segments.last()?;
    let PathArguments::AngleBracketed(args) = &segment.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    });
    if segment.ident == "BoxFuture" || segment.ident == "LocalBoxFuture" {
        return types.next();
    }
    if segment.ident != "Pin" {
        return None;
    }
    let Type::Path(boxed) = ungroup(types.next()?) else {
        return None;
    };
    let boxed = boxed.path.segments.last()?;
    let PathArguments::AngleBracketed(args) = &boxed.arguments else {
        return None;
    };
    if boxed.ident != "Box" {
        return None;
    }
    let Some(GenericArgument::Type(Type::TraitObject(object))) = args.args.first() else {
        return None;
    };
    object.bounds.iter().find_map(|bound| match bound {
        TypeParamBound::Trait(bound) => {
            let segment = bound.path.segments.last()?;
            if segment.ident != "Future" {
                return None;
            }
            future_output(&segment.arguments)
        }
        _ => None,
    })
}

/// `T` in the arguments `<Output = T>` of `Future`.
fn future_output(arguments: &PathArguments) -> Option<&Type> {
    let PathArguments::AngleBracketed(args) = arguments else {
        return None;
    };
    args.args.iter().find_map(|arg| match arg {
        GenericArgument::AssocType(assoc)
            if assoc.ident == "Output" && assoc.generics.is_none() =>
        {
            Some(&assoc.ty)
        }
        _ => None,
    })
}

/// `block` with every future it returns (its tail and its `return`s) replaced by `wrap(future)`,
/// if each is boxed where we can see it: `<path ending in pin>(future)` (`Box::pin`) or
/// `future.boxed()`/`.boxed_local()`, also in the branches of `if`, `match` and blocks. `None`
/// if any returned value is of another form (a call returning a boxed future, say), as the
/// function is then measured as a sync call.
fn wrap_boxed_futures(block: &Block, wrap: &dyn Fn(Expr) -> Expr) -> Option<Block> {
    struct Returns<'a> {
        wrap: &'a dyn Fn(Expr) -> Expr,
        all_boxed: bool,
    }

    impl Returns<'_> {
        fn tail(&mut self, block: &mut Block) {
            match block.stmts.last_mut() {
                Some(Stmt::Expr(expr, None)) => self.returned(expr),
                // Seen by `visit_expr_return_mut`.
                Some(Stmt::Expr(Expr::Return(_), Some(_))) => {}
                _ => self.all_boxed = false,
            }
        }

        fn returned(&mut self, expr: &mut Expr) {
            let placeholder = || Expr::Verbatim(TokenStream::new());
            match expr {
                Expr::Call(call)
                    if call.args.len() == 1
                        && matches!(&*call.func, Expr::Path(func)
                            if func.path.segments.last().is_some_and(|s| s.ident == "pin")) =>
                {
                    let future = std::mem::replace(&mut call.args[0], placeholder());
                    call.args[0] = (self.wrap)(future);
                }
                Expr::MethodCall(call)
                    if call.args.is_empty()
                        && (call.method == "boxed" || call.method == "boxed_local") =>
                {
                    let future = std::mem::replace(&mut *call.receiver, placeholder());
                    *call.receiver = (self.wrap)(future);
                }
                Expr::If(expr) => {
                    self.tail(&mut expr.then_branch);
                    match &mut expr.else_branch {
                        Some((_, otherwise)) => self.returned(otherwise),
                        None => self.all_boxed = false,
                    }
                }
                Expr::Match(expr) => {
                    for arm in &mut expr.arms {
                        self.returned(&mut arm.body);
                    }
                }
                Expr::Block(expr) => self.tail(&mut expr.block),
                Expr::Unsafe(expr) => self.tail(&mut expr.block),
                Expr::Paren(expr) => self.returned(&mut expr.expr),
                Expr::Group(expr) => self.returned(&mut expr.expr),
                // Seen by `visit_expr_return_mut`.
                Expr::Return(_) => {}
                _ => self.all_boxed = false,
            }
        }
    }

    impl VisitMut for Returns<'_> {
        fn visit_expr_return_mut(&mut self, expr: &mut syn::ExprReturn) {
            match &mut expr.expr {
                Some(value) => {
                    visit_mut::visit_expr_mut(self, value);
                    self.returned(value);
                }
                None => self.all_boxed = false,
            }
        }

        // A `return` in these is not the function's.
        fn visit_expr_closure_mut(&mut self, _: &mut syn::ExprClosure) {}
        fn visit_expr_async_mut(&mut self, _: &mut syn::ExprAsync) {}
        fn visit_expr_const_mut(&mut self, _: &mut syn::ExprConst) {}
        fn visit_item_mut(&mut self, _: &mut Item) {}
    }

    let mut block = block.clone();
    let mut returns = Returns {
        wrap,
        all_boxed: true,
    };
    returns.visit_block_mut(&mut block);
    returns.tail(&mut block);
    returns.all_boxed.then_some(block)
}

/// `ty` without invisible groups and parentheses.
fn ungroup(mut ty: &Type) -> &Type {
    while let Type::Group(syn::TypeGroup { elem, .. }) | Type::Paren(syn::TypeParen { elem, .. }) =
        ty
    {
        ty = elem;
    }
    ty
}

/// Whether `ty` is `!`.
fn is_never(ty: &Type) -> bool {
    matches!(ungroup(ty), Type::Never(_))
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
    match ungroup(&ty) {
        Type::Infer(_) => None,
        _ => Some(ty),
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
