//! `#[faust::agent]`: checks the fn and registers an `AgentDescriptor`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::{spanned::Spanned, Expr, FnArg, ItemFn};

use crate::options::{self, Errors};

const OPTIONS: &[&str] = &[
    "topic",
    "name",
    "concurrency",
    "codec",
    "key_codec",
    "sink",
    "group_by",
    "through",
    "on_error",
    "retries",
    "isolated_partitions",
];

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            errors.at(
                &item,
                "#[faust::agent] goes on an `async fn` that takes a `Stream`",
            );
            return errors.finish(item, TokenStream::new);
        }
    };
    let options = options::parse(args, OPTIONS, &mut errors);
    options::check_async_fn(&function, "an agent", &mut errors);

    let topics = options.strings("topic", &mut errors);
    let sinks = options.strings("sink", &mut errors);
    let group_by = options.strings("group_by", &mut errors);
    let through = options.strings("through", &mut errors);
    let fn_name = &function.sig.ident;
    let name = options
        .string("name", &mut errors)
        .unwrap_or_else(|| fn_name.to_string());
    let concurrency = options
        .positive_int("concurrency", &mut errors)
        .unwrap_or(1) as usize;
    let retries = options.positive_int("retries", &mut errors).unwrap_or(0) as u32;
    let isolated_partitions = options
        .bool("isolated_partitions", &mut errors)
        .unwrap_or(false);
    if let (true, Some(concurrency)) = (isolated_partitions, options.get("concurrency")) {
        errors.at(
            concurrency,
            "an agent with `isolated_partitions` has one actor per partition; drop `concurrency`",
        );
    }
    let on_error = match options.choice(
        "on_error",
        &["skip", "dead_letter", "stop"],
        "`on_error` is \"skip\" (the default), \"dead_letter\" or \"stop\"",
        &mut errors,
    ) {
        "dead_letter" => quote!(DeadLetter),
        "stop" => quote!(Stop),
        _ => quote!(Skip),
    };
    let (codec, codec_name) = codec(options.get("codec"), &mut errors);
    let key_codec = match options.choice(
        "key_codec",
        &["raw", "json"],
        "`key_codec` is \"raw\" (the default: a string key as its UTF-8 bytes, as Python Faust writes it) or \"json\"",
        &mut errors,
    ) {
        "json" => quote!(Json),
        _ => quote!(Raw),
    };
    let names = [
        ("topic", &topics[..]),
        ("sink", &sinks[..]),
        ("group_by", &group_by[..]),
        ("through", &through[..]),
        ("name", &[name.clone()][..]),
    ];
    check_topic_names(&options, &names, fn_name, &mut errors);

    let params: Vec<&FnArg> = function.sig.inputs.iter().collect();
    match params.len() {
        0 => errors.push(syn::Error::new(
            function.sig.paren_token.span.join(),
            "an agent takes its stream: `async fn name(stream: Stream<T>)`",
        )),
        1 if !sinks.is_empty() => errors.push(syn::Error::new(
            function.sig.paren_token.span.join(),
            "this agent declares a `sink`, so it takes a second parameter to send with: `sink: Sink<U>`",
        )),
        2 if sinks.is_empty() => errors.at(
            params[1],
            "a second parameter is the agent's `Sink`; declare where it sends with `sink = \"topic\"`",
        ),
        n if n > 2 => errors.at(params[2], "an agent takes a `Stream` and optionally a `Sink`, nothing more"),
        _ => {}
    }
    let param_types: Vec<&syn::Type> = params
        .iter()
        .filter_map(|p| match p {
            FnArg::Typed(typed) => Some(&*typed.ty),
            FnArg::Receiver(_) => None,
        })
        .collect();

    errors.finish(item, || {
        let value_type = param_types
            .first()
            .map(|ty| generic_argument(ty))
            .unwrap_or_default();
        let stream_ty = param_types.first().copied();
        let stream_arg = quote_spanned! {stream_ty.span()=> __faust_context.stream::<#codec, _>() };
        let sink_arg = param_types.get(1).map(|ty| {
            quote_spanned! {ty.span()=> __faust_context.sink::<#codec, _>() }
        });
        let sink_arg = sink_arg.into_iter();
        let location = options::location(fn_name.span());
        let output = match &function.sig.output {
            syn::ReturnType::Type(_, ty) => ty.to_token_stream(),
            syn::ReturnType::Default => quote!(()),
        };
        let result_check = quote_spanned! {output.span()=>
            let result: ::faust::__private::Result<()> = result;
        };
        let boxed = quote_spanned! {fn_name.span()=> ::faust::__private::boxed };
        // Spanned at the fn's name, so "future is not `Send`" points at the agent.
        let run = quote_spanned! {fn_name.span()=> async move {
            let result = #fn_name(#stream_arg #(, #sink_arg)*).await;
            #result_check
            result
        }};
        let boxed_run = quote_spanned! {fn_name.span()=> #boxed(#run) };
        quote! {
            #function

            const _: () = {
                fn __faust_run(__faust_context: ::faust::__private::ActorContext) -> ::faust::__private::BoxFuture<::faust::__private::Result<()>> {
                    #boxed_run
                }
                ::faust::__private::inventory::submit! {
                    ::faust::__private::AgentDescriptor {
                        name: #name,
                        topics: &[#(#topics),*],
                        sinks: &[#(#sinks),*],
                        group_by: &[#(#group_by),*],
                        through: &[#(#through),*],
                        concurrency: #concurrency,
                        isolated_partitions: #isolated_partitions,
                        on_error: ::faust::__private::OnError::#on_error,
                        retries: #retries,
                        codec: #codec_name,
                        key_codec: ::faust::__private::codec::KeyCodec::#key_codec,
                        value_type: #value_type,
                        location: #location,
                        run: __faust_run,
                    }
                }
            };
        }
    })
}

/// The codec type for `codec = json | raw | string | some::Path` (or the same as a string).
fn codec(expr: Option<&Expr>, errors: &mut Errors) -> (TokenStream, String) {
    let json = (quote!(::faust::__private::codec::Json), "json".to_owned());
    let Some(expr) = expr else { return json };
    let named = |name: &str| match name {
        "json" => Some(json.clone()),
        "raw" => Some((quote!(::faust::__private::codec::Raw), "raw".to_owned())),
        "string" => Some((quote!(::faust::__private::codec::Str), "string".to_owned())),
        _ => None,
    };
    match expr {
        Expr::Path(path) => {
            if let Some(ident) = path.path.get_ident() {
                if let Some(found) = named(&ident.to_string()) {
                    return found;
                }
            }
            let text = path.path.to_token_stream().to_string().replace(' ', "");
            (path.to_token_stream(), text)
        }
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => named(&s.value()).unwrap_or_else(|| {
            errors.at(
                s,
                "unknown codec; use json, raw, string, or a path to your codec type",
            );
            json.clone()
        }),
        other => {
            errors.at(
                other,
                "`codec` takes json, raw, string, or a path to your codec type",
            );
            json
        }
    }
}

/// `T` of `Stream<T>`, as text for listings; the whole type when it has no argument.
fn generic_argument(ty: &syn::Type) -> String {
    if let syn::Type::Path(path) = ty {
        if let Some(segment) = path.path.segments.last() {
            if let syn::PathArguments::AngleBracketed(args) = &segment.arguments {
                if let Some(arg) = args.args.first() {
                    return arg.to_token_stream().to_string().replace(' ', "");
                }
            }
        }
    }
    ty.to_token_stream().to_string().replace(' ', "")
}

/// Topic and agent names end up in Kafka topic names: check them here, not at run time.
fn check_topic_names(
    options: &options::Options,
    lists: &[(&str, &[String])],
    fn_name: &syn::Ident,
    errors: &mut Errors,
) {
    for &(option, names) in lists {
        let at = options
            .get(option)
            .map_or_else(|| fn_name.to_token_stream(), ToTokens::to_token_stream);
        for (i, topic) in names.iter().enumerate() {
            // `{app_id}` stands for the app's id, itself a valid topic name part.
            if let Some(problem) = options::topic_name_problem(&topic.replace("{app_id}", "app")) {
                errors.at(&at, format!("`{option}`: {problem}"));
            } else if names[..i].contains(topic) {
                errors.at(&at, format!("`{option}` lists '{topic}' twice"));
            }
        }
    }
}
