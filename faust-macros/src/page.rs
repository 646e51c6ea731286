//! `#[faust::page("/path")]`: registers an axum handler the worker's web server serves.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};

use crate::options::{self, Errors};

const METHODS: &[&str] = &["get", "post", "put", "delete", "patch"];

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let Some(function) = crate::task::parse_fn(&item, "#[faust::page]", &mut errors) else {
        return errors.finish(item, TokenStream::new);
    };
    let usage = "a page takes its path first: #[faust::page(\"/count/{partition}\")]";
    let (path, rest) = options::leading_literal(args, usage, &mut errors);
    if let Some(path) = &path {
        if !path.value().starts_with('/') {
            errors.at(
                path,
                "a page's path starts with `/`: \"/count/{partition}\"",
            );
        }
    }
    let options = options::parse(rest, &["method"], &mut errors);
    options::check_async_fn(&function, "a page", &mut errors);
    let method = options.choice(
        "method",
        METHODS,
        "`method` is \"get\" (the default), \"post\", \"put\", \"delete\" or \"patch\"",
        &mut errors,
    );
    let path = path.map(|p| p.value()).unwrap_or_default();
    let fn_name = &function.sig.ident;
    errors.finish(item, || {
        let location = options::location(fn_name.span());
        let routing = format_ident!("{method}");
        // Spanned at the fn's name: "not a handler" points at the page.
        let handler = quote_spanned! {fn_name.span()=>
            ::faust::__private::axum::routing::#routing(#fn_name)
        };
        quote! {
            #function

            const _: () = {
                fn __faust_route(router: ::faust::__private::axum::Router) -> ::faust::__private::axum::Router {
                    router.route(#path, #handler)
                }
                ::faust::__private::inventory::submit! {
                    ::faust::__private::PageDescriptor {
                        path: #path,
                        method: #method,
                        location: #location,
                        route: __faust_route,
                    }
                }
            };
        }
    })
}
