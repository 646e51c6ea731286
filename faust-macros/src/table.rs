//! `#[faust::table]` on `static NAME: Table<K, V>;` (or `SetTable<K, T>`, `WindowedTable<K, V>`):
//! fills in the static and registers a `TableDescriptor`.

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
    "web",
    "tumbling",
    "hopping",
    "sliding",
    "after",
    "step",
    "expires",
    "time",
    "on_window_close",
    "on_recover",
    "on_changelog_event",
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
    let web = options.bool("web", &mut errors).unwrap_or(false);
    let store = options.string("store", &mut errors).unwrap_or_default();
    if !store.is_empty() && store != "memory" && store != "rocksdb" {
        errors.at(
            options.get("store"),
            "`store` is \"rocksdb\" (the default) or \"memory\"",
        );
    }
    let (key_type, mut value_type) = key_value_types(&table.ty);
    if type_name(&table.ty).as_deref() == Some("SetTable") {
        value_type = format!("BTreeSet<{value_type}>");
    }
    if key_value_types_missing(&table.ty) {
        errors.at(
            &table.ty,
            "a table's type is `Table<K, V>`, e.g. `Table<String, i64>`",
        );
    }
    let window = window_spec(&options, &table.ty, global, &mut errors);
    // Hooks: `async fn()` once the table's partitions are recovered, and `fn(K,
    // Option<V>)` for each changelog record recovery or a global table's follower reads.
    let on_recover = match options.get("on_recover") {
        Some(callback) => quote! {
            ::core::option::Option::Some(|| ::faust::__private::boxed(async move { #callback().await }))
        },
        None => quote!(::core::option::Option::None),
    };
    let table_ty = &table.ty;
    let on_changelog_event = match options.get("on_changelog_event") {
        Some(callback) => quote! {
            ::core::option::Option::Some(|key, value| {
                let (key, value) = <#table_ty>::decode_entry(key, value)?;
                #callback(key, value);
                ::core::result::Result::Ok(())
            })
        },
        None => quote!(::core::option::Option::None),
    };
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
    // On an error the static still exists, so its uses report nothing more.
    let stand_in = quote! {
        #(#attrs)*
        #vis static #ident: #ty = <#ty>::new(
            &::faust::__private::INVALID_TABLE,
            || ::core::unreachable!("a table with an error in its declaration"),
        );
    };
    errors.finish(stand_in, || {
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
                    web: #web,
                    location: #location,
                    key_from_text: <#ty>::key_from_text,
                    window: #window,
                    on_recover: #on_recover,
                    on_changelog_event: #on_changelog_event,
                };
                ::faust::__private::inventory::submit! { __FAUST_TABLE }
                <#ty>::new(&__FAUST_TABLE, #default)
            };
        }
    })
}

/// The `WindowSpec` of a windowed table (`tumbling` or `hopping`), checked against the
/// static's type; `None` for a plain table.
fn window_spec(
    options: &options::Options,
    ty: &Type,
    global: bool,
    errors: &mut Errors,
) -> TokenStream {
    let windowed_type = type_name(ty).as_deref() == Some("WindowedTable");
    let kinds = ["tumbling", "hopping", "sliding"];
    let given: Vec<&str> = kinds
        .into_iter()
        .filter(|k| options.get(k).is_some())
        .collect();
    if let [_, second, ..] = given[..] {
        errors.at(
            options.get(second),
            "a table has one kind of windows: `tumbling`, `hopping` or `sliding`",
        );
    }
    // Sliding windows: each event's own, from `sliding` before it to `after` after it.
    let before = options
        .get("sliding")
        .map(|b| options::duration_ms(b, "sliding", errors));
    let after = options
        .get("after")
        .map_or(0, |a| options::duration_ms(a, "after", errors));
    if let (None, Some(after)) = (before, options.get("after")) {
        errors.at(
            after,
            "`after` is for sliding windows: `sliding = \"5s\", after = \"5s\"`",
        );
    }
    if let (Some(_), Some(step)) = (before, options.get("step")) {
        errors.at(
            step,
            "sliding windows have no `step`: every event has its own window",
        );
    }
    let size = match (options.get("tumbling"), options.get("hopping")) {
        // (Two kinds are refused above; the first given is used, so nothing cascades.)
        _ if before.is_some() => before.map(|before| (before + after, None)),
        (Some(size), _) => Some((options::duration_ms(size, "tumbling", errors), None)),
        (None, Some(size)) => {
            let size = options::duration_ms(size, "hopping", errors);
            let step = match options.get("step") {
                Some(step) => options::duration_ms(step, "step", errors),
                None => {
                    errors.at(
                        options.get("hopping"),
                        "hopping windows need a `step`: hopping = \"10s\", step = \"5s\"",
                    );
                    size
                }
            };
            Some((size, Some(step)))
        }
        _ => None,
    };
    let window_only = ["step", "expires", "time", "on_window_close"];
    let Some((size, step)) = size else {
        for option in window_only {
            if let Some(expr) = options.get(option) {
                errors.at(expr, format!("`{option}` is for windowed tables: add `tumbling = \"...\"`, `hopping = \"...\"` or `sliding = \"...\"`"));
            }
        }
        if windowed_type {
            errors.at(ty, "a WindowedTable needs its windows: `tumbling = \"1h\"`, `hopping = \"10s\", step = \"5s\"`, or `sliding = \"5s\", after = \"5s\"`");
        }
        return quote!(::core::option::Option::None);
    };
    if !windowed_type {
        errors.at(ty, "a table with windows is declared as `WindowedTable<K, V>` (faust::tables::WindowedTable)");
    }
    if global {
        errors.at(options.get("global"), "a windowed table cannot be global");
    }
    let step = step.unwrap_or(size);
    if step > size {
        errors.at(
            options.get("step"),
            "`step` cannot be longer than the window (`hopping`)",
        );
    }
    let expires = options
        .get("expires")
        .map_or(size, |e| options::duration_ms(e, "expires", errors));
    let time = match options.string("time", errors).as_deref() {
        None | Some("event") => quote!(::faust::__private::TimeReference::Event),
        Some("wall") => quote!(::faust::__private::TimeReference::Wall),
        Some(_) => {
            errors.at(
                options.get("time"),
                "`time` is \"event\" (the message timestamp, the default) or \"wall\"",
            );
            quote!(::faust::__private::TimeReference::Event)
        }
    };
    let on_close = match options.get("on_window_close") {
        Some(callback) => quote! {
            ::core::option::Option::Some(|key, window, value| ::faust::__private::boxed(async move {
                let (key, value) = <#ty>::decode_closed(&key, &value)?;
                #callback(key, window, value).await
            }))
        },
        None => quote!(::core::option::Option::None),
    };
    let (size, step, expires) = (size as i64, step as i64, expires as i64);
    let before = match before {
        Some(before) => {
            let before = before as i64;
            quote!(::core::option::Option::Some(#before))
        }
        None => quote!(::core::option::Option::None),
    };
    quote! {
        ::core::option::Option::Some(::faust::__private::WindowSpec {
            size_ms: #size,
            step_ms: #step,
            before_ms: #before,
            expires_ms: #expires,
            time: #time,
            on_close: #on_close,
        })
    }
}

/// The last segment of a path type: `WindowedTable` of `faust::WindowedTable<K, V>`.
fn type_name(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(path) => path.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
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
