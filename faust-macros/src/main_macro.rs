//! `faust::main!(id = "...", option = value, ...)`: the generated `main`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use crate::options::Errors;

pub fn expand(input: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    // Every AppBuilder setter is an option; rustc checks the names and types.
    let options = match syn::parse::Parser::parse2(
        syn::punctuated::Punctuated::<syn::MetaNameValue, syn::Token![,]>::parse_terminated,
        input,
    ) {
        Ok(list) => list,
        Err(e) => {
            errors.push(syn::Error::new(
                e.span(),
                "faust::main! takes `id = \"app-id\"` and `option = value` pairs",
            ));
            return errors.finish(quote! { fn main() {} }, TokenStream::new);
        }
    };
    let mut id = None;
    let mut setters = Vec::new();
    for option in &options {
        let Some(name) = option.path.get_ident() else {
            errors.at(
                &option.path,
                "options are plain names, like `partitions = 4`",
            );
            continue;
        };
        let value = &option.value;
        if name == "id" {
            id = Some(value.clone());
        } else {
            setters.push(quote_spanned! {name.span()=> .#name(#value) });
        }
    }
    let Some(id) = id else {
        errors.push(syn::Error::new(
            proc_macro2::Span::call_site(),
            "faust::main! needs the app id: `faust::main!(id = \"my-app\")`",
        ));
        // A stand-in `main`, so the missing id is the only error.
        let stand_in = quote! { fn main() {} };
        return errors.finish(stand_in, TokenStream::new);
    };
    errors.finish(TokenStream::new(), || {
        quote! {
            fn __faust_main_app() -> ::faust::__private::AppBuilder {
                ::faust::__private::App::builder(#id) #(#setters)*
            }
            // The test context tests the app as its worker runs it.
            ::faust::__private::inventory::submit! {
                ::faust::__private::MainApp(__faust_main_app)
            }
            fn main() -> ::std::process::ExitCode {
                let name = ::core::option_env!("CARGO_BIN_NAME").unwrap_or(::core::env!("CARGO_PKG_NAME"));
                ::faust::__private::cli_main(
                    __faust_main_app(),
                    name,
                    ::core::env!("CARGO_PKG_VERSION"),
                )
            }
        }
    })
}
