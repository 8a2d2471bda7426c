//! Simulation against an https node: a TLS server on 127.0.0.1, with certificates made for the test
//! by rcgen, stands in for a hosted node (an API key in the URL path, another in a header) and
//! forwards JSON-RPC to the devnet's anvil. opgate trusts its private CA through `[tls] ca_file`;
//! without it, the certificate is refused and the op is answered `SimulationUnavailable`. The same
//! server, as an https bundler, shows the CA file is trusted for upstreams too.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use alloy_primitives::{address, Bytes, U256};
use bytes::Bytes as Body;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::devnet::Devnet;
use crate::sim::{Account, V07};
use crate::support::*;

/// A certificate authority made for one test, and a server certificate for 127.0.0.1 it signed.
struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Pki {
    fn new() -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "opgate test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        Self {
            ca_pem: ca_cert.pem(),
            chain: vec![server.der().clone(), ca_cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(server_key.serialize_der()),
        }
    }

    /// The CA certificate in a PEM file of its own (removed on drop).
    fn ca_file(&self, name: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("opgate-test-{name}-{}.pem", std::process::id()));
        std::fs::write(&path, &self.ca_pem).unwrap();
        TempFile(path)
    }
}

struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One HTTP request the TLS node received (after a completed handshake).
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    api_key: Option<String>,
    authorization: Option<String>,
    body: String,
}

/// An https JSON-RPC node on 127.0.0.1: answers over TLS only, forwarding every body to `backend`
/// (plain http), or answering `{"error":…}` without one.
struct TlsNode {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<oneshot::Sender<()>>,
}

impl TlsNode {
    async fn start(pki: &Pki, backend: Option<String>) -> Self {
        let config = rustls::ServerConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(pki.chain.clone(), PrivateKeyDer::Pkcs8(pki.key.clone_key()))
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let record = seen.clone();
        let backend = Arc::new(backend);
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = &mut stopped => return,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => return },
                };
                let (acceptor, record, backend) = (acceptor.clone(), record.clone(), backend.clone());
                tokio::spawn(async move {
                    // A refused handshake simply ends the connection: the client reports why.
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (record, backend) = (record.clone(), backend.clone());
                        async move {
                            let header = |name: &str| {
                                req.headers()
                                    .get(name)
                                    .map(|v| v.to_str().unwrap_or_default().to_string())
                            };
                            let (path, api_key, authorization) = (
                                req.uri().path().to_string(),
                                header("x-api-key"),
                                header("authorization"),
                            );
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            record.lock().unwrap().push(Seen {
                                path,
                                api_key,
                                authorization,
                                body: String::from_utf8_lossy(&body).into_owned(),
                            });
                            let answer = match backend.as_deref() {
                                Some(url) => forward(url, body).await,
                                None => {
                                    Body::from(r#"{"jsonrpc":"2.0","id":0,"error":{"code":-32000,"message":"no"}}"#)
                                }
                            };
                            Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(answer))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            stop: Some(stop),
        }
    }

    /// `https://127.0.0.1:PORT` followed by `rest`.
    fn url(&self, rest: &str) -> String {
        format!("https://{}{rest}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TlsNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// POSTs `body` to the plain-http `url`; the answer's body.
async fn forward(url: &str, body: Body) -> Body {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Body>>();
    let req = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    let resp = client.request(req).await.expect("anvil answers");
    resp.into_body().collect().await.unwrap().to_bytes()
}

/// The TOML of one chain served by `upstream`, simulated against `node` (a TOML value).
fn chain_toml(id: u64, upstream: &str, node: &str) -> String {
    format!(
        "[[chains]]\nid = {id}\nupstreams = [\"{upstream}\"]\nnode = {node}\n\
         [chains.simulation]\ntimeout = \"10s\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_node_behind_a_private_ca_is_simulated_over_tls() {
    let devnet = Devnet::up().await;
    let anvil = devnet.get("ANVIL_URL").to_string();
    let pki = Pki::new();
    let ca = pki.ca_file("node-ca");
    let node = TlsNode::start(&pki, Some(anvil.clone())).await;
    let upstream = FakeBundler::answering(r#""0x01""#).await;
    let toml = format!(
        "[tls]\nca_file = \"{}\"\n{}",
        ca.0.display(),
        chain_toml(
            31337,
            &upstream.url(),
            &format!(
                "{{ url = \"{}\", headers = {{ x-api-key = \"header-secret\" }} }}",
                node.url("/v2/path-secret")
            )
        )
    );
    let opgate = Opgate::start_toml(&toml).await;

    let account = Account::funded(&anvil, V07, 0x31).await;
    let to = address!("000000000000000000000000000000000000dEaD");
    let (_, rpc_op) = account.op(&anvil, true, to, U256::from(777), Bytes::new(), None).await;
    let params = json!([rpc_op, V07.entry_point]).to_string();
    let r = call(&opgate.url("/31337"), "opgate_explainUserOperation", &params).await;
    let sim = &r["result"]["simulation"];
    assert!(sim["error"].is_null(), "{r}");
    assert_eq!(sim["validation"]["ok"], true, "{r}");
    assert_eq!(sim["execution"]["success"], true, "{r}");
    assert_eq!(sim["effects"]["nativeOut"], "777", "{r}");
    let m = opgate.metrics().await;
    assert_eq!(
        sample(&m, r#"opgate_simulations_total{chain="31337",outcome="ok"}"#),
        Some(1.0),
        "{m}"
    );

    // Every read went over TLS to the node, with its path and header; anvil answered them.
    let seen = node.seen();
    assert!(seen.iter().any(|s| s.body.contains("eth_getBlockByNumber")), "{seen:?}");
    assert!(seen.iter().any(|s| s.body.contains("eth_getCode")), "{seen:?}");
    for s in &seen {
        assert_eq!(s.path, "/v2/path-secret");
        assert_eq!(s.api_key.as_deref(), Some("header-secret"));
        assert_eq!(s.authorization, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_an_https_node_url_are_sent_as_basic_auth() {
    let pki = Pki::new();
    let ca = pki.ca_file("basic-auth-ca");
    let node = TlsNode::start(&pki, None).await;
    let upstream = FakeBundler::answering(r#""0x01""#).await;
    let url = node.url("/").replace("https://", "https://project%40id:s3cret@");
    let toml = format!(
        "[tls]\nca_file = \"{}\"\n{}",
        ca.0.display(),
        chain_toml(1, &upstream.url(), &format!("\"{url}\""))
    );
    let opgate = Opgate::start_toml(&toml).await;
    let r = call(
        &opgate.url("/1"),
        "opgate_explainUserOperation",
        &vector_params("ep08-simple-account-batch"),
    )
    .await;
    // The node answers every read with an error, so the simulation cannot finish: that its
    // requests arrived with the credentials is what counts.
    let error = r["result"]["simulation"]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("node"), "{r}");
    assert!(!r.to_string().contains("s3cret"), "{r}");
    let seen = node.seen();
    assert!(!seen.is_empty());
    // base64("project@id:s3cret")
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some("Basic cHJvamVjdEBpZDpzM2NyZXQ="),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_node_certificate_is_simulation_unavailable() {
    let pki = Pki::new();
    let node = TlsNode::start(&pki, None).await;
    let upstream = FakeBundler::answering(r#""0x01""#).await;
    let params = vector_params("ep08-simple-account-batch");
    // No [tls] ca_file: the test CA is in no trusted root set.
    let toml = |on_sim_error: &str| {
        format!(
            "{}on_sim_error = \"{on_sim_error}\"\n",
            chain_toml(
                1,
                &upstream.url(),
                &format!("\"{}\"", node.url("/v3/path-secret?key=query-secret"))
            )
        )
    };

    let strict = Opgate::start_toml(&toml("reject")).await;
    let r = call(&strict.url("/1"), "eth_sendUserOperation", &params).await;
    assert_eq!(r["error"]["code"], -32053, "{r}");
    assert_eq!(r["error"]["data"]["reason"], "SimulationUnavailable", "{r}");
    let detail = r["error"]["data"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("certificate") && detail.contains("UnknownIssuer"),
        "the answer should name the certificate problem: {detail}"
    );
    let text = r.to_string();
    assert!(!text.contains("path-secret") && !text.contains("query-secret"), "{r}");
    assert!(upstream.received().is_empty(), "nothing was relayed");
    assert!(node.seen().is_empty(), "no request crossed the refused handshake");
    let m = strict.metrics().await;
    assert_eq!(
        sample(&m, r#"opgate_simulations_total{chain="1",outcome="error"}"#),
        Some(1.0),
        "{m}"
    );

    // With on_sim_error = "allow" the op is relayed, and explain shows why it went unsimulated.
    let lenient = Opgate::start_toml(&toml("allow")).await;
    let r = call(&lenient.url("/1"), "eth_sendUserOperation", &params).await;
    assert_eq!(r["result"], "0x01", "{r}");
    let r = call(&lenient.url("/1"), "opgate_explainUserOperation", &params).await;
    let error = r["result"]["simulation"]["error"].as_str().unwrap();
    assert!(error.starts_with("node") && error.contains("certificate"), "{r}");
    assert!(!r.to_string().contains("secret"), "{r}");

    // A CA file naming another authority changes nothing: the node's chain still ends nowhere.
    let other = Pki::new();
    let ca = other.ca_file("other-ca");
    let elsewhere = Opgate::start_toml(&format!("[tls]\nca_file = \"{}\"\n{}", ca.0.display(), toml("reject"))).await;
    let r = call(&elsewhere.url("/1"), "eth_sendUserOperation", &params).await;
    assert_eq!(r["error"]["code"], -32053, "{r}");
}

#[test]
fn a_ca_file_that_is_not_pem_certificates_is_a_config_error() {
    let dir = std::env::temp_dir();
    let bad = dir.join(format!("opgate-test-not-a-ca-{}.pem", std::process::id()));
    std::fs::write(&bad, "hello").unwrap();
    let bad = TempFile(bad);
    for (path, expect) in [
        (bad.0.display().to_string(), "no `BEGIN CERTIFICATE` block"),
        (dir.join("opgate-no-such-file.pem").display().to_string(), "cannot read"),
    ] {
        let toml = format!("[tls]\nca_file = \"{path}\"\n[[chains]]\nid = 1\nupstreams = [\"http://a\"]\n");
        let err = opgate::config::Config::from_toml(&toml, &Default::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("tls.ca_file") && text.contains(expect), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_file_is_trusted_for_https_upstreams_too() {
    let pki = Pki::new();
    let ca = pki.ca_file("upstream-ca");
    let bundler = TlsNode::start(&pki, None).await;
    let chain = format!("[[chains]]\nid = 1\nupstreams = [\"{}\"]\n", bundler.url("/rpc"));

    // Trusted: the bundler's JSON-RPC error comes back unchanged, so the request crossed TLS.
    let trusting = Opgate::start_toml(&format!("[tls]\nca_file = \"{}\"\n{chain}", ca.0.display())).await;
    let r = call(&trusting.url("/1"), "eth_chainId", "[]").await;
    assert_eq!(r["error"]["code"], -32000, "{r}");
    assert_eq!(bundler.seen().len(), 1);

    // Not trusted: no upstream answered, and the bundler never saw a request.
    let plain = Opgate::start_toml(&chain).await;
    let r = call(&plain.url("/1"), "eth_chainId", "[]").await;
    assert_eq!(r["error"]["code"], -32050, "{r}");
    assert_eq!(bundler.seen().len(), 1);
}
