//! Codecs turn message bytes into agent values and back.
//!
//! A codec is a marker type chosen per agent with `#[faust::agent(codec = ...)]`:
//! [`Json`] (the default, via serde), [`Raw`] (the bytes as they are) and [`Str`]
//! (UTF-8 text). A custom codec implements [`Decode`] and [`Encode`].
//!
//! Message keys have their own [`KeyCodec`]: by default a string key is its UTF-8
//! bytes, as Python Faust (`key_serializer="raw"`), Java's `StringSerializer` and most
//! producers write it, so a key lands in the same partition whoever sends it.
//! [`Namespaced`] writes a value as Python Faust writes its `Record`s.

use std::borrow::Cow;

use serde::{de::DeserializeOwned, Serialize};

/// Why a payload could not be decoded; logged with the event's coordinates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// Turns a message payload into a `T`.
#[diagnostic::on_unimplemented(
    message = "the codec `{Self}` cannot decode values of type `{T}`",
    note = "`json` decodes types that implement serde's `Deserialize`, `raw` decodes `Vec<u8>`, `string` decodes `String`"
)]
pub trait Decode<T>: 'static {
    /// Decodes one payload. A tombstone (no payload) arrives as an empty slice.
    fn decode(bytes: &[u8]) -> Result<T, DecodeError>;
}

/// Turns a `T` into message bytes.
#[diagnostic::on_unimplemented(
    message = "the codec `{Self}` cannot encode values of type `{T}`",
    note = "`json` encodes types that implement serde's `Serialize`, `raw` encodes `Vec<u8>`, `string` encodes `String`"
)]
pub trait Encode<T: ?Sized>: 'static {
    /// Encodes one value, or says why it cannot.
    fn encode(value: &T) -> Result<Vec<u8>, String>;
}

/// JSON through serde; the default, and what Python Faust writes.
pub struct Json;

impl<T: DeserializeOwned> Decode<T> for Json {
    fn decode(bytes: &[u8]) -> Result<T, DecodeError> {
        if bytes.is_empty() {
            return Err(DecodeError(
                "empty payload (a tombstone?) is not JSON".into(),
            ));
        }
        serde_json::from_slice(bytes).map_err(|e| DecodeError(format!("invalid JSON: {e}")))
    }
}

impl<T: Serialize + ?Sized> Encode<T> for Json {
    fn encode(value: &T) -> Result<Vec<u8>, String> {
        serde_json::to_vec(value).map_err(|e| e.to_string())
    }
}

/// The payload bytes, untouched.
pub struct Raw;

impl Decode<Vec<u8>> for Raw {
    fn decode(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
        Ok(bytes.to_vec())
    }
}

impl Encode<Vec<u8>> for Raw {
    fn encode(value: &Vec<u8>) -> Result<Vec<u8>, String> {
        Ok(value.clone())
    }
}

impl Encode<[u8]> for Raw {
    fn encode(value: &[u8]) -> Result<Vec<u8>, String> {
        Ok(value.to_vec())
    }
}

/// UTF-8 text.
pub struct Str;

impl Decode<String> for Str {
    fn decode(bytes: &[u8]) -> Result<String, DecodeError> {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| DecodeError(format!("invalid UTF-8: {e}")))
    }
}

impl Encode<String> for Str {
    fn encode(value: &String) -> Result<Vec<u8>, String> {
        Ok(value.as_bytes().to_vec())
    }
}

impl Encode<str> for Str {
    fn encode(value: &str) -> Result<Vec<u8>, String> {
        Ok(value.as_bytes().to_vec())
    }
}

/// A value as Python Faust writes a `Record`: its JSON object with Faust's namespace
/// field, `"__faust": {"ns": "module.ClassName"}`. An untyped Faust agent
/// (`@app.agent()` on its own channel) picks the class to decode into by that name; a
/// typed one (`value_type=Withdrawal`) needs no namespace. Reading Faust's records
/// needs no wrapper: serde ignores the extra field.
///
/// ```
/// # #[derive(serde::Serialize)] struct Withdrawal { user: String, amount: f64 }
/// use faust::codec::Namespaced;
/// let w = Namespaced::new("withdrawals.Withdrawal", Withdrawal { user: "a".into(), amount: 3.0 });
/// assert_eq!(
///     serde_json::to_string(&w).unwrap(),
///     r#"{"user":"a","amount":3.0,"__faust":{"ns":"withdrawals.Withdrawal"}}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Namespaced<T> {
    /// The record's fields.
    #[serde(flatten)]
    pub value: T,
    /// Faust's metadata: the record's namespace.
    #[serde(rename = "__faust")]
    pub faust: Namespace,
}

/// Faust's record metadata (`"__faust": {"ns": ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Namespace {
    /// The Python class's namespace: `module.ClassName`, or the record's `namespace=`.
    pub ns: String,
}

impl<T> Namespaced<T> {
    /// `value`, to be decoded by Python Faust as the record class `namespace`.
    pub fn new(namespace: impl Into<String>, value: T) -> Self {
        Namespaced {
            value,
            faust: Namespace {
                ns: namespace.into(),
            },
        }
    }
}

/// How message keys are written (`#[faust::agent(key_codec = "...")]` for `group_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyCodec {
    /// Python Faust's default (`key_serializer="raw"`): a string key is its UTF-8 bytes
    /// (`alice`, not `"alice"`). A key that is not a string (a number, a struct) has no
    /// raw form and is written as JSON, as a Faust `Record` key is.
    #[default]
    Raw,
    /// Every key as JSON (`"alice"`), as earlier faust-rs builds wrote keys; for topics
    /// whose consumers expect JSON keys, or state partitioned by such keys.
    Json,
}

impl KeyCodec {
    /// Encodes one key.
    pub fn encode<K: Serialize + ?Sized>(self, key: &K) -> Result<Vec<u8>, String> {
        let json = serde_json::to_vec(key).map_err(|e| e.to_string())?;
        Ok(match self {
            KeyCodec::Json => json,
            KeyCodec::Raw => raw_key(&json).into_owned(),
        })
    }
}

/// A key in its JSON form (as tables store keys) written as [`KeyCodec::Raw`] writes it:
/// a JSON string as its text, anything else unchanged. Tables place a key by these bytes,
/// so a table keyed like its source topic finds a key where the topic's events are.
pub(crate) fn raw_key(json: &[u8]) -> Cow<'_, [u8]> {
    match json {
        [b'"', text @ .., b'"'] if !text.contains(&b'\\') => Cow::Borrowed(text),
        [b'"', ..] => match serde_json::from_slice::<String>(json) {
            Ok(text) => Cow::Owned(text.into_bytes()),
            Err(_) => Cow::Borrowed(json),
        },
        _ => Cow::Borrowed(json),
    }
}

/// Decodes a key written by either [`KeyCodec`] (or by Python Faust, or any producer
/// of text keys): as JSON when it is JSON of a `K`, else as its text (`alice` and
/// `"alice"` both decode to the `String` "alice"; `42` to the number or the text).
pub fn decode_key<K: DeserializeOwned>(bytes: &[u8]) -> Result<K, DecodeError> {
    let json_error = match serde_json::from_slice(bytes) {
        Ok(key) => return Ok(key),
        Err(e) => e,
    };
    let text = std::str::from_utf8(bytes)
        .map_err(|_| DecodeError(format!("the key is neither JSON ({json_error}) nor text")))?;
    // Through a JSON string, so newtypes and unit enum variants decode from text too.
    let quoted = serde_json::to_vec(text).map_err(|e| DecodeError(e.to_string()))?;
    serde_json::from_slice(&quoted).map_err(|e| {
        DecodeError(format!(
            "the key is neither JSON of the expected type ({json_error}) nor text it takes ({e})"
        ))
    })
}

/// A JSON text with Python's `ensure_ascii` escapes (`"caf\u00e9"`, what Python Faust
/// writes for table keys without orjson) spelled as serde_json spells it (`"café"`), so
/// the same key is the same bytes whoever wrote it. Only `\uXXXX` escapes of characters
/// from U+007F up change; anything else (and JSON without such escapes) is kept as is.
pub(crate) fn canonical_json(bytes: &[u8]) -> Cow<'_, [u8]> {
    if !bytes.windows(2).any(|w| w == b"\\u") {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match unicode_escape(bytes, i) {
            Some((c, len)) if c >= '\u{7f}' => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += len;
            }
            // Another escape (`\n`, `\\`, `\u0001`, a lone surrogate): kept, both bytes
            // at once so an escaped backslash is not read as the start of an escape.
            _ => {
                out.extend_from_slice(&bytes[i..(i + 2).min(bytes.len())]);
                i += 2;
            }
        }
    }
    Cow::Owned(out)
}

/// The character of the `\uXXXX` escape (or surrogate pair) at `at`, and its length.
fn unicode_escape(bytes: &[u8], at: usize) -> Option<(char, usize)> {
    let unit = |at: usize| -> Option<u32> {
        let digits = bytes.get(at..at + 6)?.strip_prefix(b"\\u")?;
        u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let high = unit(at)?;
    if !(0xD800..0xDC00).contains(&high) {
        return char::from_u32(high).map(|c| (c, 6));
    }
    let low = unit(at + 6).filter(|low| (0xDC00..0xE000).contains(low))?;
    char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)).map(|c| (c, 12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize, serde::Serialize)]
    struct Order {
        id: u32,
    }

    #[test]
    fn json_round_trips_and_explains_failures() {
        let bytes = <Json as Encode<Order>>::encode(&Order { id: 7 }).unwrap();
        assert_eq!(<Json as Decode<Order>>::decode(&bytes), Ok(Order { id: 7 }));
        let err = <Json as Decode<Order>>::decode(b"{\"id\": \"x\"").unwrap_err();
        assert!(err.0.starts_with("invalid JSON"), "{err}");
        let err = <Json as Decode<Order>>::decode(b"").unwrap_err();
        assert!(err.0.contains("empty payload"), "{err}");
    }

    #[test]
    fn string_rejects_invalid_utf8() {
        assert_eq!(<Str as Decode<String>>::decode(b"hi").unwrap(), "hi");
        assert!(<Str as Decode<String>>::decode(&[0xff, 0xfe]).is_err());
    }

    proptest::proptest! {
        #![proptest_config(crate::property_test_config())]

        /// Any payload decodes or fails with an error, never a panic, in every codec.
        #[test]
        fn no_payload_panics_a_decoder(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            decode_all(&bytes)?;
        }

        /// The same for text that looks like JSON, which random bytes rarely do.
        #[test]
        fn no_json_like_text_panics_a_decoder(text in r#"[\[\]{}",:0-9a-z .eE+\\-]{0,64}"#) {
            decode_all(text.as_bytes())?;
        }
    }

    fn decode_all(bytes: &[u8]) -> Result<(), proptest::test_runner::TestCaseError> {
        use std::collections::HashMap;
        let _ = <Json as Decode<serde_json::Value>>::decode(bytes);
        let _ = <Json as Decode<Order>>::decode(bytes);
        let _ = <Json as Decode<String>>::decode(bytes);
        let _ = <Json as Decode<u64>>::decode(bytes);
        let _ = <Json as Decode<Vec<HashMap<String, Option<f64>>>>>::decode(bytes);
        let text = <Str as Decode<String>>::decode(bytes);
        proptest::prop_assert_eq!(text.is_ok(), std::str::from_utf8(bytes).is_ok());
        proptest::prop_assert_eq!(
            <Raw as Decode<Vec<u8>>>::decode(bytes).ok(),
            Some(bytes.to_vec())
        );
        Ok(())
    }

    #[derive(Debug, PartialEq, serde::Deserialize, serde::Serialize)]
    struct UserId(String);

    #[test]
    fn string_keys_are_raw_text_and_other_keys_json() {
        let raw = |key: &dyn erased::Key| key.encode(KeyCodec::Raw);
        assert_eq!(raw(&"alice"), b"alice");
        assert_eq!(raw(&"say \"hi\"\\"), br#"say "hi"\"#);
        assert_eq!(raw(&"café"), "café".as_bytes());
        assert_eq!(raw(&UserId("bob".into())), b"bob");
        assert_eq!(raw(&42u32), b"42");
        assert_eq!(raw(&Order { id: 7 }), br#"{"id":7}"#);
        assert_eq!(KeyCodec::Json.encode("alice").unwrap(), br#""alice""#);
    }

    #[test]
    fn keys_decode_from_either_form() {
        assert_eq!(decode_key::<String>(b"alice"), Ok("alice".into()));
        assert_eq!(decode_key::<String>(br#""alice""#), Ok("alice".into()));
        assert_eq!(decode_key::<String>(b"42"), Ok("42".into()));
        assert_eq!(decode_key::<u32>(b"42"), Ok(42));
        assert_eq!(decode_key::<UserId>(b"bob"), Ok(UserId("bob".into())));
        assert_eq!(decode_key::<Order>(br#"{"id":7}"#), Ok(Order { id: 7 }));
        let err = decode_key::<u32>(b"alice").unwrap_err();
        assert!(err.0.contains("neither JSON"), "{err}");
        assert!(decode_key::<String>(&[0xff]).is_err());
    }

    #[test]
    fn python_escapes_become_serde_json_spelling() {
        let canonical =
            |json: &str| String::from_utf8(canonical_json(json.as_bytes()).into_owned()).unwrap();
        assert_eq!(canonical(r#""caf\u00e9""#), r#""café""#);
        assert_eq!(canonical(r#""\ud83d\ude00""#), r#""😀""#);
        assert_eq!(
            canonical(r#"["caf\u00E9",[1.0,2.0]]"#),
            r#"["café",[1.0,2.0]]"#
        );
        // Escapes serde_json writes too stay; an escaped backslash is not an escape.
        assert_eq!(canonical(r#""a\u0001\n\\u00e9""#), r#""a\u0001\n\\u00e9""#);
        assert_eq!(canonical(r#""\ud83d""#), r#""\ud83d""#);
        assert!(matches!(canonical_json(br#""cafe""#), Cow::Borrowed(_)));
    }

    /// What Python's `json.dumps(text)` writes (`ensure_ascii`, its default).
    fn python_json(text: &str) -> String {
        let mut out = String::from("\"");
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                ' '..='~' => out.push(c),
                _ => {
                    let mut units = [0; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
            }
        }
        out.push('"');
        out
    }

    mod erased {
        /// A key of any type, for tables of cases.
        pub trait Key {
            fn encode(&self, codec: super::KeyCodec) -> Vec<u8>;
        }
        impl<K: serde::Serialize> Key for K {
            fn encode(&self, codec: super::KeyCodec) -> Vec<u8> {
                codec.encode(self).unwrap()
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(crate::property_test_config())]

        /// Any text Python Faust writes as a JSON key is, made canonical, what faust-rs
        /// writes for the same text; and a raw key decodes back to its text.
        #[test]
        fn python_and_serde_json_keys_agree(text in proptest::prelude::any::<String>()) {
            let python = python_json(&text);
            let canonical = canonical_json(python.as_bytes()).into_owned();
            proptest::prop_assert_eq!(canonical, serde_json::to_vec(&text).unwrap());
            let raw = KeyCodec::Raw.encode(&text).unwrap();
            proptest::prop_assert_eq!(&raw, text.as_bytes());
            let decoded = decode_key::<String>(&raw);
            // A text that is itself JSON of a string ("\"x\"") decodes as that string.
            if serde_json::from_slice::<String>(&raw).is_err() {
                proptest::prop_assert_eq!(decoded, Ok(text));
            }
        }
    }

    #[test]
    fn faust_records_decode_into_plain_structs_and_round_trip_namespaced() {
        let faust = br#"{"id": 7, "__faust": {"ns": "shop.Order"}}"#;
        assert_eq!(<Json as Decode<Order>>::decode(faust), Ok(Order { id: 7 }));
        let read = <Json as Decode<Namespaced<Order>>>::decode(faust).unwrap();
        assert_eq!(read, Namespaced::new("shop.Order", Order { id: 7 }));
        let written = <Json as Encode<_>>::encode(&read).unwrap();
        assert_eq!(written, br#"{"id":7,"__faust":{"ns":"shop.Order"}}"#);
    }

    #[test]
    fn raw_passes_bytes_through() {
        assert_eq!(
            <Raw as Decode<Vec<u8>>>::decode(&[0, 1]).unwrap(),
            vec![0, 1]
        );
    }
}
