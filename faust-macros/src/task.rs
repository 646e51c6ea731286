//! `#[faust::task]` and `#[faust::command]`: async fns the worker or the CLI runs.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ItemFn;

use crate::options::{self, Errors};

pub fn expand_task(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let Some(function) = parse_fn(&item, "#[faust::task]", &mut errors) else {
        return errors.finish(item, TokenStream::new);
    };
    let options = options::parse(args, &["name"], &mut errors);
    options::check_async_fn(&function, "a task", &mut errors);
    if let Some(param) = function.sig.inputs.first() {
        errors.at(param, "a task takes no parameters");
    }
    let fn_name = &function.sig.ident;
    let name = options
        .string("name", &mut errors)
        .unwrap_or_else(|| fn_name.to_string());
    errors.finish(item, || {
        let location = options::location(fn_name.span());
        let boxed = quote_spanned! {fn_name.span()=> ::faust::__private::boxed };
        quote! {
            #function

            ::faust::__private::inventory::submit! {
                ::faust::__private::TaskDescriptor {
                    name: #name,
                    location: #location,
                    run: || #boxed(#fn_name()),
                }
            }
        }
    })
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
            "a command takes at most one parameter, its arguments: `args: Vec<String>`",
        );
    }
    let fn_name = &function.sig.ident;
    let name = options
        .string("name", &mut errors)
        .unwrap_or_else(|| fn_name.to_string().replace('_', "-"));
    let about = options
        .string("about", &mut errors)
        .unwrap_or_else(|| options::doc_comment(&function.attrs));
    let takes_args = !inputs.is_empty();
    errors.finish(item, || {
        let location = options::location(fn_name.span());
        let boxed = quote_spanned! {fn_name.span()=> ::faust::__private::boxed };
        let call = if takes_args {
            quote!(#fn_name(__faust_args))
        } else {
            quote!({ let _ = __faust_args; #fn_name() })
        };
        quote! {
            #function

            ::faust::__private::inventory::submit! {
                ::faust::__private::CommandDescriptor {
                    name: #name,
                    about: #about,
                    location: #location,
                    run: |__faust_args: ::std::vec::Vec<::std::string::String>| #boxed(#call),
                }
            }
        }
    })
}

fn parse_fn(item: &TokenStream, what: &str, errors: &mut Errors) -> Option<ItemFn> {
    match syn::parse2(item.clone()) {
        Ok(f) => Some(f),
        Err(_) => {
            errors.at(item, format!("{what} goes on an `async fn`"));
            None
        }
    }
}
