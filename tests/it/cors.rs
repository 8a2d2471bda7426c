//! CORS on the JSON-RPC listener: a browser's preflight is answered by opgate itself, and every
//! answer a browser can get — relayed results, opgate's own errors, batches, 413s, unknown paths
//! — carries the CORS headers for an allowed origin and none for another. Off unless configured.

use bytes::Bytes;
use http_body_util::Full;

use crate::support::*;

const ALLOWED: &str = "https://app.example.com";
const DENIED: &str = "https://evil.example.net";

async fn opgate_with_cors(upstream: &FakeBundler) -> Opgate {
    Opgate::start_toml(&format!(
        "[server]\nmax_request_body = \"1KiB\"\n[server.cors]\nallowed_origins = [\"{ALLOWED}\", \
         \"https://*.example.org\", \"http://127.0.0.1:*\"]\nmax_age = \"10m\"\n[[chains]]\nid = 1\nupstreams = \
         [\"{}\"]\n",
        upstream.url()
    ))
    .await
}

fn preflight(url: &str, origin: &str) -> hyper::Request<Full<Bytes>> {
    hyper::Request::builder()
        .method("OPTIONS")
        .uri(url)
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-api-key")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn post_from(url: &str, origin: &str, body: &str) -> hyper::Request<Full<Bytes>> {
    hyper::Request::post(url)
        .header("origin", origin)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn header<'a>(h: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn a_preflight_is_answered_by_opgate_for_allowed_origins_only() {
    let upstream = FakeBundler::answering("\"0x1\"").await;
    let opgate = opgate_with_cors(&upstream).await;
    for origin in [ALLOWED, "https://a.b.example.org", "http://127.0.0.1:5173"] {
        let (status, h, _) = request(preflight(&opgate.url("/"), origin)).await;
        assert_eq!(status, 204, "{origin}");
        assert_eq!(header(&h, "access-control-allow-origin"), Some(origin));
        let methods = header(&h, "access-control-allow-methods").unwrap_or_default();
        assert!(methods.contains("POST"), "{methods}");
        let allowed = header(&h, "access-control-allow-headers").unwrap_or_default();
        for needed in ["content-type", "authorization", "x-api-key"] {
            assert!(allowed.contains(needed), "{needed} in {allowed}");
        }
        assert_eq!(header(&h, "access-control-max-age"), Some("600"));
    }
    for origin in [DENIED, "https://example.org", "http://127.0.0.2:5173", "null"] {
        let (status, h, _) = request(preflight(&opgate.url("/"), origin)).await;
        assert_eq!(status, 403, "{origin}");
        assert_eq!(header(&h, "access-control-allow-origin"), None, "{origin}");
    }
    assert!(upstream.received().is_empty(), "a preflight is never relayed");
}

#[tokio::test]
async fn every_answer_carries_the_cors_headers_for_an_allowed_origin_and_none_for_another() {
    let upstream = FakeBundler::answering("\"0x1\"").await;
    let opgate = opgate_with_cors(&upstream).await;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":["{}"]}}"#,
        "a".repeat(2048)
    );
    let cases: Vec<(&str, String, String, u16)> = vec![
        (
            "a relayed result",
            opgate.url("/"),
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#.into(),
            200,
        ),
        (
            "opgate's own error",
            opgate.url("/"),
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_sendUserOperation","params":[]}"#.into(),
            200,
        ),
        (
            "a batch",
            opgate.url("/"),
            r#"[{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]},{"jsonrpc":"2.0","id":2,"method":"nope","params":[]}]"#.into(),
            200,
        ),
        ("an oversized body (413)", opgate.url("/"), big, 413),
        (
            "an unknown chain path",
            opgate.url("/999"),
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#.into(),
            404,
        ),
    ];
    for (what, url, body, status) in &cases {
        let (got, h, text) = request(post_from(url, ALLOWED, body)).await;
        assert_eq!(got, *status, "{what}: {text}");
        assert_eq!(header(&h, "access-control-allow-origin"), Some(ALLOWED), "{what}");
        assert!(header(&h, "vary").is_some_and(|v| v.contains("origin")), "{what}");
        let (got, h, text) = request(post_from(url, DENIED, body)).await;
        assert_eq!(got, *status, "{what}: {text}");
        assert_eq!(header(&h, "access-control-allow-origin"), None, "{what}");
    }
}

#[tokio::test]
async fn cors_is_off_unless_configured() {
    let upstream = FakeBundler::answering("\"0x1\"").await;
    let opgate = Opgate::in_front_of(&[upstream.url()]).await;
    let (status, h, _) = request(preflight(&opgate.url("/"), ALLOWED)).await;
    assert_ne!(status, 204);
    assert_eq!(header(&h, "access-control-allow-origin"), None);
    let (status, h, _) = request(post_from(
        &opgate.url("/"),
        ALLOWED,
        r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#,
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "access-control-allow-origin"), None);
}

#[test]
fn bad_origins_are_refused_by_check_config() {
    for bad in ["app.example.com", "https://a*.example.com", "https://x/y"] {
        let toml = format!(
            "[server.cors]\nallowed_origins = [\"{bad}\"]\n[[chains]]\nid = 1\nupstreams = [\"http://127.0.0.1:1\"]\n"
        );
        let e = opgate::config::Config::from_toml(&toml, &opgate::config::Overrides::default())
            .expect_err(bad)
            .to_string();
        assert!(e.contains("server.cors.allowed_origins"), "{e}");
    }
}
