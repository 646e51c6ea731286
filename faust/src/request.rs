//! Agent requests and replies as Python Faust writes them (faust/agents/models.py and
//! agent.py, checked against faust-streaming 0.15.3's own serializers):
//!
//! - a request is the value itself with the headers `Faust-Ag-ReplyTo` and
//!   `Faust-Ag-CorrelationId` (Faust's default, `use_reply_headers=True`), or the value
//!   wrapped in a record: `{"value":..,"reply_to":..,"correlation_id":..,"__faust":
//!   {"ns":"@ReqRepRequest"}}` (`faust.agents.models.ModelReqRepRequest` when the
//!   value is a Record);
//! - a reply goes to the `reply_to` topic, unkeyed: `{"key":..,"value":..,
//!   "correlation_id":..,"__faust":{"ns":"@ReqRepResponse"}}`.
//!
//! faust-rs sends requests with the headers and reads both forms.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::event::Header;

/// The header naming the topic a request's reply goes to.
pub(crate) const REPLY_TO: &str = "Faust-Ag-ReplyTo";
/// The header naming the request, so the asker can match its reply.
pub(crate) const CORRELATION_ID: &str = "Faust-Ag-CorrelationId";

/// Where the reply to a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplyAddress {
    pub(crate) reply_to: String,
    pub(crate) correlation_id: String,
}

/// A request read from a message: where its reply goes, and, when it came wrapped in
/// Faust's request record, the bytes of the value inside.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub(crate) address: ReplyAddress,
    pub(crate) unwrapped: Option<&'a [u8]>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    value: &'a RawValue,
    reply_to: String,
    correlation_id: String,
    #[serde(rename = "__faust")]
    faust: Namespace,
}

#[derive(Deserialize, Serialize)]
struct Namespace {
    ns: String,
}

/// The request a message carries, if it is one: by its headers, or by the record it is
/// wrapped in. Anything else (most messages) is `None`, found without parsing.
pub(crate) fn request<'a>(headers: &[Header], payload: &'a [u8]) -> Option<Request<'a>> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    if let Some(reply_to) = header(REPLY_TO) {
        return Some(Request {
            address: ReplyAddress {
                reply_to: reply_to.to_owned(),
                correlation_id: header(CORRELATION_ID).unwrap_or_default().to_owned(),
            },
            unwrapped: None,
        });
    }
    // Only a JSON object naming Faust's request record is parsed.
    let json_object = payload.trim_ascii_start().first() == Some(&b'{');
    if !json_object || memchr::memmem::find(payload, b"ReqRepRequest").is_none() {
        return None;
    }
    let envelope: Envelope<'a> = serde_json::from_slice(payload).ok()?;
    if !envelope.faust.ns.ends_with("ReqRepRequest") {
        return None;
    }
    Some(Request {
        address: ReplyAddress {
            reply_to: envelope.reply_to,
            correlation_id: envelope.correlation_id,
        },
        unwrapped: Some(envelope.value.get().as_bytes()),
    })
}

/// The headers that make a message a request.
pub(crate) fn request_headers(address: &ReplyAddress) -> [Header; 2] {
    [
        Header::new(REPLY_TO, address.reply_to.as_bytes()),
        Header::new(CORRELATION_ID, address.correlation_id.as_bytes()),
    ]
}

#[derive(Serialize)]
struct ResponseOut<'a> {
    key: &'a RawValue,
    value: &'a RawValue,
    correlation_id: &'a str,
    #[serde(rename = "__faust")]
    faust: Namespace,
}

/// A reply record for the request `correlation_id`, whose message had `key`; `value`
/// is JSON. The key is written as JSON when it is JSON, else as a string when it is
/// text, else null (Faust writes the request's decoded key; askers ignore it).
pub(crate) fn response(key: Option<&[u8]>, value: &RawValue, correlation_id: &str) -> Vec<u8> {
    let key_json = key
        .and_then(|key| std::str::from_utf8(key).ok())
        .and_then(|text| {
            // `from_string` parses: anything but JSON becomes a JSON string.
            RawValue::from_string(text.to_owned())
                .or_else(|_| serde_json::value::to_raw_value(text))
                .ok()
        });
    let null = RawValue::NULL;
    let out = ResponseOut {
        key: key_json.as_deref().unwrap_or(null),
        value,
        correlation_id,
        faust: Namespace {
            ns: "@ReqRepResponse".to_owned(),
        },
    };
    // Serializing borrowed JSON and strings cannot fail.
    serde_json::to_vec(&out).unwrap_or_default()
}

/// A reply read from a reply topic.
#[derive(Deserialize)]
pub(crate) struct Response {
    pub(crate) correlation_id: String,
    pub(crate) value: Box<RawValue>,
}

/// Reads a reply record; `None` for anything else.
pub(crate) fn parse_response(payload: &[u8]) -> Option<Response> {
    serde_json::from_slice(payload).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes faust-streaming 0.15.3 writes: `ReqRepRequest(value=30.3, reply_to=..,
    /// correlation_id=..).dumps()` and its Model form, and a reply.
    const FAUST_REQUEST: &[u8] = br#"{"value":30.3,"reply_to":"f-reply-abc","correlation_id":"c1","__faust":{"ns":"@ReqRepRequest"}}"#;
    const FAUST_MODEL_REQUEST: &[u8] = br#"{"value":{"x":1.0,"__faust":{"ns":"pt"}},"reply_to":"f-reply-abc","correlation_id":"c1","__faust":{"ns":"faust.agents.models.ModelReqRepRequest"}}"#;
    const FAUST_RESPONSE: &[u8] =
        br#"{"key":null,"value":3030.0,"correlation_id":"c1","__faust":{"ns":"@ReqRepResponse"}}"#;

    fn address() -> ReplyAddress {
        ReplyAddress {
            reply_to: "f-reply-abc".into(),
            correlation_id: "c1".into(),
        }
    }

    #[test]
    fn faust_request_records_are_unwrapped() {
        let request = request(&[], FAUST_REQUEST).unwrap();
        assert_eq!(request.address, address());
        assert_eq!(request.unwrapped, Some(&b"30.3"[..]));
        let model = super::request(&[], FAUST_MODEL_REQUEST).unwrap();
        assert_eq!(
            model.unwrapped,
            Some(&br#"{"x":1.0,"__faust":{"ns":"pt"}}"#[..])
        );
    }

    #[test]
    fn a_request_by_headers_keeps_its_value() {
        let headers = request_headers(&address());
        let request = request(&headers, b"30.3").unwrap();
        assert_eq!(request.address, address());
        assert_eq!(request.unwrapped, None);
    }

    #[test]
    fn other_messages_are_no_requests() {
        assert!(request(&[], b"30.3").is_none());
        assert!(request(&[], br#"{"value":1,"note":"ReqRepRequest"}"#).is_none());
        let other_ns =
            br#"{"value":1,"reply_to":"t","correlation_id":"c","__faust":{"ns":"mine"}}"#;
        assert!(request(&[], other_ns).is_none());
    }

    #[test]
    fn replies_are_written_and_read_as_faust_does() {
        let value = RawValue::from_string("3030.0".into()).unwrap();
        assert_eq!(response(None, &value, "c1"), FAUST_RESPONSE);
        let keyed = response(Some(b"alice"), &value, "c1");
        assert!(keyed.starts_with(br#"{"key":"alice","#), "{keyed:?}");
        let json_key = response(Some(b"[1,2]"), &value, "c1");
        assert!(json_key.starts_with(br#"{"key":[1,2],"#));
        let parsed = parse_response(FAUST_RESPONSE).unwrap();
        assert_eq!(parsed.correlation_id, "c1");
        assert_eq!(parsed.value.get(), "3030.0");
        assert!(parse_response(b"3030.0").is_none());
    }
}
