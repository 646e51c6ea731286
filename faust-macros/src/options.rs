//! `key = value` option lists, with spanned errors for the usual mistakes.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::{parse::Parser, punctuated::Punctuated, Expr, ExprLit, Lit, Meta, Token};

/// Parsed options, in order, with their name spans.
pub struct Options {
    pub entries: Vec<(syn::Ident, Expr)>,
}

/// Collects errors so that a macro reports all of them at once.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub fn at(&mut self, spanned: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(spanned, message));
    }

    /// The user's item followed by every error, so IDEs keep working on the item.
    pub fn finish(self, item: TokenStream, expansion: impl FnOnce() -> TokenStream) -> TokenStream {
        match self.0 {
            Some(error) => {
                let errors = error.to_compile_error();
                quote::quote! { #item #errors }
            }
            None => expansion(),
        }
    }
}

/// Parses `a = 1, b = "x"`, accepting only the `known` names.
pub fn parse(args: TokenStream, known: &[&str], errors: &mut Errors) -> Options {
    let mut entries = Vec::new();
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args) {
        Ok(metas) => metas,
        Err(e) => {
            errors.push(e);
            return Options { entries };
        }
    };
    let expected = known.join(", ");
    for meta in metas {
        let Some(ident) = meta.path().get_ident().cloned() else {
            errors.at(
                meta.path(),
                format!("unknown option; expected one of: {expected}"),
            );
            continue;
        };
        if !known.contains(&ident.to_string().as_str()) {
            errors.at(
                &ident,
                format!("unknown option `{ident}`; expected one of: {expected}"),
            );
            continue;
        }
        match meta {
            Meta::NameValue(nv) => {
                if entries
                    .iter()
                    .any(|(i, _): &(syn::Ident, Expr)| *i == ident)
                {
                    errors.at(&ident, format!("`{ident}` is given twice"));
                } else {
                    entries.push((ident, nv.value));
                }
            }
            other => errors.at(other, format!("`{ident}` needs a value: `{ident} = ...`")),
        }
    }
    Options { entries }
}

impl Options {
    pub fn get(&self, name: &str) -> Option<&Expr> {
        self.entries.iter().find(|(i, _)| i == name).map(|(_, e)| e)
    }

    pub fn string(&self, name: &str, errors: &mut Errors) -> Option<String> {
        let expr = self.get(name)?;
        match lit_str(expr) {
            Some(s) if !s.is_empty() => Some(s),
            _ => {
                errors.at(
                    expr,
                    format!("`{name}` must be a non-empty string literal, e.g. {name} = \"...\""),
                );
                None
            }
        }
    }

    /// A string that must be one of `choices` (the first is the default); on another,
    /// `help` is the error.
    pub fn choice<'c>(
        &self,
        name: &str,
        choices: &[&'c str],
        help: &str,
        errors: &mut Errors,
    ) -> &'c str {
        let given = self.string(name, errors);
        match choices.iter().find(|c| Some(**c) == given.as_deref()) {
            Some(choice) => choice,
            None => {
                if let (Some(_), Some(expr)) = (given, self.get(name)) {
                    errors.at(expr, help);
                }
                choices[0]
            }
        }
    }

    /// A string or a list of strings.
    pub fn strings(&self, name: &str, errors: &mut Errors) -> Vec<String> {
        let Some(expr) = self.get(name) else {
            return Vec::new();
        };
        let items: Vec<&Expr> = match expr {
            Expr::Array(array) => array.elems.iter().collect(),
            single => vec![single],
        };
        let mut out = Vec::new();
        for item in items {
            match lit_str(item) {
                Some(s) if !s.is_empty() => out.push(s),
                _ => errors.at(
                    item,
                    format!("`{name}` takes a topic name or a list of them, e.g. {name} = \"orders\" or {name} = [\"a\", \"b\"]"),
                ),
            }
        }
        if out.is_empty() && matches!(expr, Expr::Array(_)) {
            errors.at(expr, format!("`{name}` must list at least one topic"));
        }
        out
    }

    pub fn positive_int(&self, name: &str, errors: &mut Errors) -> Option<u64> {
        let expr = self.get(name)?;
        match expr {
            Expr::Lit(ExprLit {
                lit: Lit::Int(int), ..
            }) => match int.base10_parse::<u64>() {
                Ok(n) if n >= 1 => Some(n),
                _ => {
                    errors.at(
                        expr,
                        format!("`{name}` must be a whole number of at least 1"),
                    );
                    None
                }
            },
            _ => {
                errors.at(
                    expr,
                    format!("`{name}` must be a whole number of at least 1, e.g. {name} = 4"),
                );
                None
            }
        }
    }

    pub fn bool(&self, name: &str, errors: &mut Errors) -> Option<bool> {
        let expr = self.get(name)?;
        match expr {
            Expr::Lit(ExprLit {
                lit: Lit::Bool(b), ..
            }) => Some(b.value),
            _ => {
                errors.at(expr, format!("`{name}` must be `true` or `false`"));
                None
            }
        }
    }
}

/// A duration in milliseconds: `"10s"`, `"500ms"`, `"5m"`, `"1h"`, `"1d"`, or a number of
/// seconds (`10`, `0.5`), as Python Faust's timers take.
pub fn duration_ms(expr: &Expr, name: &str, errors: &mut Errors) -> u64 {
    let parsed = match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => parse_duration_ms(&s.value()),
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_parse::<u64>().ok().map(|s| s * 1000),
        Expr::Lit(ExprLit {
            lit: Lit::Float(f), ..
        }) => f
            .base10_parse::<f64>()
            .ok()
            .map(|s| (s * 1000.0).round() as u64),
        _ => None,
    };
    match parsed {
        Some(ms) if ms > 0 => ms,
        _ => {
            errors.at(
                expr,
                format!("`{name}` is a positive duration: \"10s\", \"500ms\", \"5m\", \"1h\", \"1d\", or seconds (10, 0.5)"),
            );
            0
        }
    }
}

fn parse_duration_ms(text: &str) -> Option<u64> {
    let duration = faust_grammar::parse_duration(text).ok()?;
    u64::try_from(duration.as_millis()).ok()
}

fn lit_str(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s.value()),
        _ => None,
    }
}

/// `file:line` of a span, filled in by the compiler.
pub fn location(span: Span) -> TokenStream {
    quote::quote_spanned! {span=> ::core::concat!(::core::file!(), ":", ::core::line!()) }
}

/// The doc comment of an item, as one line.
pub fn doc_comment(attrs: &[syn::Attribute]) -> String {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            Meta::NameValue(nv) => lit_str(&nv.value),
            _ => None,
        })
        .map(|line| line.trim().to_owned())
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_owned()
}

/// Checks the common shape of registered functions: `async fn` returning something.
pub fn check_async_fn(function: &syn::ItemFn, what: &str, errors: &mut Errors) {
    let sig = &function.sig;
    if sig.asyncness.is_none() {
        errors.at(sig.fn_token, format!("{what} must be an `async fn`"));
    }
    if !sig.generics.params.is_empty() {
        errors.at(&sig.generics, format!("{what} cannot be generic"));
    }
    if let Some(receiver) = sig.receiver() {
        errors.at(
            receiver,
            format!("{what} must be a free function, not a method"),
        );
    }
    if matches!(sig.output, syn::ReturnType::Default) {
        errors.push(syn::Error::new(
            sig.paren_token.span.close(),
            format!("{what} must return `faust::Result<()>`"),
        ));
    }
}

/// Why `name` cannot be (part of) a Kafka topic name, if it cannot.
pub fn topic_name_problem(name: &str) -> Option<String> {
    if name.len() > 249 {
        return Some(format!("'{name}' is longer than Kafka's 249 characters"));
    }
    name.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .map(|c| {
            format!(
                "'{name}' contains '{c}'; Kafka topic names use letters, digits, '.', '_' and '-'"
            )
        })
}

/// A string literal first (a crontab's schedule, a page's path) and the options after
/// it; `usage` is the error when the literal is missing.
pub fn leading_literal(
    args: TokenStream,
    usage: &str,
    errors: &mut Errors,
) -> (Option<syn::LitStr>, TokenStream) {
    let mut tokens = args.clone().into_iter();
    let literal = tokens
        .next()
        .and_then(|t| syn::parse2::<syn::LitStr>(t.into()).ok());
    if literal.is_none() {
        errors.at(&args, usage);
        return (None, TokenStream::new());
    }
    // Skip the comma after the literal; the rest are options.
    (literal, tokens.skip(1).collect())
}
