//! The JSON-RPC envelope as it travels to and from an upstream bundler.
//!
//! Results, error data and params are kept as raw JSON text (`RawValue`) so that what the upstream
//! answered reaches the client byte for byte, and what the client sent reaches the upstream
//! unchanged.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

/// A JSON-RPC error object from an upstream, passed back to the client unchanged.
#[derive(Debug, Clone)]
pub struct UpstreamRpcError {
    /// The error code.
    pub code: i32,
    /// The message.
    pub message: String,
    /// The `data` member, exactly as sent (including an explicit `null`); `None` when absent.
    pub data: Option<Box<RawValue>>,
}

/// What an upstream answered: a result or an error object.
#[derive(Debug, Clone)]
pub enum UpstreamAnswer {
    /// The `result` member, exactly as sent (`null` included).
    Result(Box<RawValue>),
    /// The `error` member.
    Error(UpstreamRpcError),
}

// Raw JSON compares by its exact text: two answers are equal when their bytes are.
impl PartialEq for UpstreamRpcError {
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code
            && self.message == other.message
            && self.data.as_ref().map(|d| d.get()) == other.data.as_ref().map(|d| d.get())
    }
}

impl Eq for UpstreamRpcError {}

impl PartialEq for UpstreamAnswer {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Result(a), Self::Result(b)) => a.get() == b.get(),
            (Self::Error(a), Self::Error(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for UpstreamAnswer {}

/// Deserializes a member that is present, keeping `null` as raw `null` instead of `None`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default, deserialize_with = "present")]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireError {
    /// Some bundlers leave it out (Alto's HTTP 500 answers): `-32603` then.
    #[serde(default = "internal_error")]
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default, deserialize_with = "present")]
    data: Option<Box<RawValue>>,
}

fn internal_error() -> i64 {
    -32603
}

/// Why a body is not a JSON-RPC response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvelopeError(pub String);

/// Parses a single JSON-RPC response body.
pub fn parse_response(body: &[u8]) -> Result<UpstreamAnswer, EnvelopeError> {
    let wire: WireResponse =
        serde_json::from_slice(body).map_err(|e| EnvelopeError(format!("not a JSON-RPC response: {e}")))?;
    match (wire.error, wire.result) {
        (Some(err), _) => {
            let code = i32::try_from(err.code)
                .map_err(|_| EnvelopeError(format!("error code {} is out of range", err.code)))?;
            Ok(UpstreamAnswer::Error(UpstreamRpcError {
                code,
                message: err.message,
                data: err.data,
            }))
        }
        (None, Some(result)) => Ok(UpstreamAnswer::Result(result)),
        (None, None) => Err(EnvelopeError("response has neither `result` nor `error`".into())),
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    jsonrpc: &'static str,
    id: u64,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a RawValue>,
}

/// Encodes a request; params are written exactly as given.
pub(super) fn encode_request(id: u64, method: &str, params: Option<&RawValue>) -> Vec<u8> {
    serde_json::to_vec(&WireRequest {
        jsonrpc: "2.0",
        id,
        method,
        params,
    })
    .expect("a string, an integer and raw JSON always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_results_and_error_data_verbatim() {
        let body = br#"{"jsonrpc":"2.0","id":1,"result":{"b":1,  "a":[0x0]}}"#;
        // Not valid JSON (0x0 literal): rejected rather than guessed at.
        assert!(parse_response(body).is_err());
        let body = br#"{"jsonrpc":"2.0","id":1,"result":{"b":1,  "a":["0x0"]}}"#;
        assert_eq!(
            parse_response(body).unwrap(),
            UpstreamAnswer::Result(RawValue::from_string(r#"{"b":1,  "a":["0x0"]}"#.into()).unwrap())
        );
        let body = br#"{"jsonrpc":"2.0","id":1,"result":null}"#;
        assert!(matches!(parse_response(body).unwrap(), UpstreamAnswer::Result(r) if r.get() == "null"));
        let body =
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32500,"message":"AA21 didn't pay prefund","data":{"x" : 1}}}"#;
        match parse_response(body).unwrap() {
            UpstreamAnswer::Error(e) => {
                assert_eq!(e.code, -32500);
                assert_eq!(e.message, "AA21 didn't pay prefund");
                assert_eq!(e.data.unwrap().get(), r#"{"x" : 1}"#);
            }
            other => panic!("{other:?}"),
        }
        let body = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"nope","data":null}}"#;
        assert!(
            matches!(parse_response(body).unwrap(), UpstreamAnswer::Error(e) if e.data.as_ref().unwrap().get() == "null")
        );
    }

    #[test]
    fn rejects_what_is_not_a_response() {
        for body in [
            &b"<html>502</html>"[..],
            b"[]",
            b"{}",
            br#"{"error":{"code":1e40,"message":"x"}}"#,
        ] {
            assert!(parse_response(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn encodes_params_verbatim() {
        let params = RawValue::from_string(r#"[{"sender":"0xAbC"}, "0x00"]"#.into()).unwrap();
        let body = encode_request(7, "eth_sendUserOperation", Some(&params));
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"jsonrpc":"2.0","id":7,"method":"eth_sendUserOperation","params":[{"sender":"0xAbC"}, "0x00"]}"#
        );
    }
}
