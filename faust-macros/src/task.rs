//! `#[faust::task]`, `#[faust::timer]`, `#[faust::crontab]` and `#[faust::command]`:
//! async fns the worker or the CLI runs.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::{spanned::Spanned, ItemFn};

use crate::options::{self, Errors};

/// What a scheduled fn is: run once, every interval, or on a crontab.
#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    Task,
    Timer,
    Crontab,
}

/// `#[faust::task]`, `#[faust::timer(interval = "10s")]` or
/// `#[faust::crontab("*/5 * * * *")]` (its expression first, then the options).
pub fn expand_scheduled(args: TokenStream, item: TokenStream, kind: Kind) -> TokenStream {
    let mut errors = Errors::default();
    let (what, known): (&str, &[&str]) = match kind {
        Kind::Task => ("task", &["name", "on_leader"]),
        Kind::Timer => ("timer", &["interval", "name", "on_leader"]),
        Kind::Crontab => ("crontab", &["name", "on_leader", "timezone"]),
    };
    let Some(function) = parse_fn(&item, &format!("#[faust::{what}]"), &mut errors) else {
        return errors.finish(item, TokenStream::new);
    };
    let (expression, args) = match kind {
        Kind::Crontab => split_expression(args, &mut errors),
        _ => (None, args),
    };
    let options = options::parse(args, known, &mut errors);
    options::check_async_fn(&function, &format!("a {what}"), &mut errors);
    if let Some(param) = function.sig.inputs.first() {
        errors.at(param, format!("a {what} takes no parameters"));
    }
    let fn_name = &function.sig.ident;
    let name = options
        .string("name", &mut errors)
        .unwrap_or_else(|| fn_name.to_string());
    let on_leader = options.bool("on_leader", &mut errors).unwrap_or(false);
    let schedule = match kind {
        Kind::Task => None,
        Kind::Crontab => {
            let expression = expression.unwrap_or_default();
            let timezone = match options.string("timezone", &mut errors) {
                Some(zone) => quote!(::core::option::Option::Some(#zone)),
                None => quote!(::core::option::Option::None),
            };
            Some(quote!(::faust::__private::Schedule::Cron {
                expression: #expression,
                timezone: #timezone,
            }))
        }
        Kind::Timer => {
            let millis = match options.get("interval") {
                Some(expr) => options::duration_ms(expr, "interval", &mut errors),
                None => {
                    errors.push(syn::Error::new(
                        proc_macro2::Span::call_site(),
                        "a timer needs its interval: #[faust::timer(interval = \"10s\")]",
                    ));
                    0
                }
            };
            Some(
                quote!(::faust::__private::Schedule::Every(::core::time::Duration::from_millis(#millis))),
            )
        }
    };
    errors.finish(item, || {
        let location = options::location(fn_name.span());
        let boxed = quote_spanned! {fn_name.span()=> ::faust::__private::boxed };
        let descriptor = match schedule {
            None => quote!(::faust::__private::TaskDescriptor),
            Some(_) => quote!(::faust::__private::TimerDescriptor),
        };
        let schedule = schedule.map(|s| quote!(schedule: #s,));
        quote! {
            #function

            ::faust::__private::inventory::submit! {
                #descriptor {
                    name: #name,
                    location: #location,
                    #schedule
                    on_leader: #on_leader,
                    run: || #boxed(#fn_name()),
                }
            }
        }
    })
}

/// The crontab expression (a string literal first) and the options after it.
fn split_expression(args: TokenStream, errors: &mut Errors) -> (Option<String>, TokenStream) {
    let usage = "a crontab takes its schedule first: #[faust::crontab(\"*/5 * * * *\")]";
    let (expression, rest) = options::leading_literal(args, usage, errors);
    let Some(expression) = expression else {
        return (None, rest);
    };
    // The runtime's own grammar: a crontab that compiles is one the worker runs.
    if let Err(problem) = faust_grammar::Cron::parse(&expression.value()) {
        errors.at(&expression, problem);
    }
    (Some(expression.value()), rest)
}

pub fn expand_command(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let Some(function) = parse_fn(&item, "#[faust::command]", &mut errors) else {
        return errors.finish(item, TokenStream::new);
    };
    let options = options::parse(args, &["name", "about"], &mut errors);
    options::check_async_fn(&function, "a command", &mut errors);
    let inputs = &function.sig.inputs;
    if let Some(extra) = inputs.iter().nth(1) {
        errors.at(
            extra,
            "a command takes at most one parameter, its arguments: `args: Vec<String>`, or a \
             type that derives `clap::Args`",
        );
    }
    let fn_name = &function.sig.ident;
    let name = options
        .string("name", &mut errors)
        .unwrap_or_else(|| fn_name.to_string().replace('_', "-"));
    let about = options
        .string("about", &mut errors)
        .unwrap_or_else(|| options::doc_comment(&function.attrs));
    let parameter = match inputs.first() {
        Some(syn::FnArg::Typed(typed)) => Some((*typed.ty).clone()),
        _ => None,
    };
    errors.finish(item, || {
        let location = options::location(fn_name.span());
        let boxed = quote_spanned! {fn_name.span()=> ::faust::__private::boxed };
        // No parameter: no arguments. `Vec<String>`: whatever follows the name. Any
        // other type: its `clap::Args`.
        let (arguments, run) = match &parameter {
            None => (quote!(|command| command), quote!(|_| #boxed(#fn_name()))),
            Some(ty) if is_vec(ty) => (
                quote!(::faust::__private::free_arguments),
                quote!(|matches| #boxed(#fn_name(::faust::__private::free_arguments_of(matches)))),
            ),
            Some(ty) => (
                quote_spanned!(ty.span()=> <#ty as ::faust::clap::Args>::augment_args),
                quote! {
                    |matches| match ::faust::__private::typed_arguments::<#ty>(matches) {
                        ::core::result::Result::Ok(args) => #boxed(#fn_name(args)),
                        ::core::result::Result::Err(failed) => failed,
                    }
                },
            ),
        };
        quote! {
            #function

            ::faust::__private::inventory::submit! {
                ::faust::__private::CommandDescriptor {
                    name: #name,
                    about: #about,
                    location: #location,
                    arguments: #arguments,
                    run: #run,
                }
            }
        }
    })
}

/// Whether `ty` is a `Vec` (a command's free arguments).
fn is_vec(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Path(path) => path.path.segments.last().is_some_and(|s| s.ident == "Vec"),
        _ => false,
    }
}

pub fn parse_fn(item: &TokenStream, what: &str, errors: &mut Errors) -> Option<ItemFn> {
    match syn::parse2(item.clone()) {
        Ok(f) => Some(f),
        Err(_) => {
            errors.at(item, format!("{what} goes on an `async fn`"));
            None
        }
    }
}
