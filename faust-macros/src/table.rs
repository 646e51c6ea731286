//! `#[faust::table]` on `static NAME: Table<K, V>;`: fills in the static and registers a
//! `TableDescriptor`.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::{
    parse::{Parse, ParseStream},
    Attribute, Ident, Token, Type, Visibility,
};

use crate::options::{self, Errors};

const OPTIONS: &[&str] = &[
    "name",
    "default",
    "partitions",
    "global",
    "store",
    "use_partitioner",
];

/// `static NAME: Type;`, which is not a Rust item on its own, so parsed by hand.
struct TableStatic {
    attrs: Vec<Attribute>,
    vis: Visibility,
    ident: Ident,
    ty: Type,
}

impl Parse for TableStatic {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        input.parse::<Token![static]>()?;
        let ident = input.parse()?;
        input.parse::<Token![:]>()?;
        let ty = input.parse()?;
        if input.peek(Token![=]) {
            return Err(input.error("a table's value comes from the macro: write `static NAME: Table<K, V>;` without `= ...`"));
        }
        input.parse::<Token![;]>()?;
        Ok(TableStatic {
            attrs,
            vis,
            ident,
            ty,
        })
    }
}

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let table: TableStatic = match syn::parse2(item.clone()) {
        Ok(t) => t,
        Err(e) => {
            let message = if e.to_string().contains("without `= ...`") {
                e.to_string()
            } else {
                "#[faust::table] goes on `static NAME: Table<K, V>;`".to_owned()
            };
            errors.push(syn::Error::new(e.span(), message));
            return errors.finish(TokenStream::new(), TokenStream::new);
        }
    };
    let options = options::parse(args, OPTIONS, &mut errors);
    let name = options
        .string("name", &mut errors)
        .unwrap_or_else(|| table.ident.to_string().to_lowercase());
    let partitions = match options.positive_int("partitions", &mut errors) {
        Some(n) if n > i32::MAX as u64 => {
            errors.at(options.get("partitions"), "`partitions` is too large");
            quote!(::core::option::Option::None)
        }
        Some(n) => {
            let n = n as i32;
            quote!(::core::option::Option::Some(#n))
        }
        None => quote!(::core::option::Option::None),
    };
    let global = options.bool("global", &mut errors).unwrap_or(false);
    let use_partitioner = options
        .bool("use_partitioner", &mut errors)
        .unwrap_or(false);
    let store = options.string("store", &mut errors).unwrap_or_default();
    if !store.is_empty() && store != "memory" && store != "rocksdb" {
        errors.at(
            options.get("store"),
            "`store` is \"rocksdb\" (the default) or \"memory\"",
        );
    }
    let (key_type, value_type) = key_value_types(&table.ty);
    if key_value_types_missing(&table.ty) {
        errors.at(
            &table.ty,
            "a table's type is `Table<K, V>`, e.g. `Table<String, i64>`",
        );
    }
    let default = match options.get("default") {
        Some(expr) => quote!(|| #expr),
        None => quote!(::core::default::Default::default),
    };

    let TableStatic {
        attrs,
        vis,
        ident,
        ty,
    } = &table;
    let location = options::location(ident.span());
    errors.finish(TokenStream::new(), || {
        quote! {
            #(#attrs)*
            #vis static #ident: #ty = {
                const __FAUST_TABLE: ::faust::__private::TableDescriptor = ::faust::__private::TableDescriptor {
                    name: #name,
                    key_type: #key_type,
                    value_type: #value_type,
                    partitions: #partitions,
                    global: #global,
                    store: #store,
                    use_partitioner: #use_partitioner,
                    location: #location,
                    key_from_text: <#ty>::key_from_text,
                };
                ::faust::__private::inventory::submit! { __FAUST_TABLE }
                ::faust::Table::new(&__FAUST_TABLE, #default)
            };
        }
    })
}

fn type_arguments(ty: &Type) -> Vec<String> {
    let Type::Path(path) = ty else {
        return Vec::new();
    };
    let Some(segment) = path.path.segments.last() else {
        return Vec::new();
    };
    let syn::PathArguments::AngleBracketed(args) = &segment.arguments else {
        return Vec::new();
    };
    args.args
        .iter()
        .map(|a| a.to_token_stream().to_string().replace(' ', ""))
        .collect()
}

fn key_value_types(ty: &Type) -> (String, String) {
    let mut args = type_arguments(ty).into_iter();
    (
        args.next().unwrap_or_default(),
        args.next().unwrap_or_default(),
    )
}

fn key_value_types_missing(ty: &Type) -> bool {
    type_arguments(ty).len() != 2
}
