//! Codecs turn message bytes into agent values and back.
//!
//! A codec is a marker type chosen per agent with `#[faust::agent(codec = ...)]`:
//! [`Json`] (the default, via serde), [`Raw`] (the bytes as they are) and [`Str`]
//! (UTF-8 text). A custom codec implements [`Decode`] and [`Encode`].

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

    #[test]
    fn raw_passes_bytes_through() {
        assert_eq!(
            <Raw as Decode<Vec<u8>>>::decode(&[0, 1]).unwrap(),
            vec![0, 1]
        );
    }
}
