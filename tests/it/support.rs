//! Real parts for the integration tests: a fake bundler over HTTP on 127.0.0.1 that records what
//! it receives and answers from a script, opgate started on 127.0.0.1:0, and a small client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opgate::app::App;
use opgate::config::{Config, Overrides};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What the fake bundler does with one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with this JSON-RPC body; `{id}` in the text is replaced by the request's id.
    Json(String),
    /// This status and raw body.
    Status(u16, String),
    /// Wait, then reply.
    Delay(Duration, Box<Reply>),
}

/// One request as the fake bundler received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    /// The params member's raw text, exactly as received.
    pub params: Option<String>,
}

type Script = Arc<dyn Fn(&Received) -> Reply + Send + Sync>;

/// A fake upstream bundler.
pub struct FakeBundler {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Option<oneshot::Sender<()>>,
}

#[derive(serde::Deserialize)]
struct WireReq<'a> {
    #[serde(borrow)]
    id: &'a serde_json::value::RawValue,
    method: String,
    #[serde(default, borrow)]
    params: Option<&'a serde_json::value::RawValue>,
}

impl FakeBundler {
    /// Starts a fake bundler answering with `script`.
    pub async fn start(script: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let script: Script = Arc::new(script);
        let (stop, mut stopped) = oneshot::channel::<()>();
        let rec = received.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = &mut stopped => return,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => return },
                };
                let rec = rec.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let rec = rec.clone();
                        let script = script.clone();
                        async move {
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let wire: WireReq<'_> = match serde_json::from_slice(&body) {
                                Ok(w) => w,
                                Err(_) => {
                                    return Ok::<_, Infallible>(
                                        hyper::Response::builder()
                                            .status(400)
                                            .body(Full::new(Bytes::new()))
                                            .unwrap(),
                                    )
                                }
                            };
                            let received = Received {
                                method: wire.method.clone(),
                                params: wire.params.map(|p| p.get().to_string()),
                            };
                            rec.lock().unwrap().push(received.clone());
                            let mut reply = script(&received);
                            loop {
                                match reply {
                                    Reply::Delay(d, next) => {
                                        tokio::time::sleep(d).await;
                                        reply = *next;
                                    }
                                    Reply::Json(text) => {
                                        let text = text.replace("{id}", wire.id.get());
                                        return Ok(hyper::Response::builder()
                                            .header("content-type", "application/json")
                                            .body(Full::new(Bytes::from(text)))
                                            .unwrap());
                                    }
                                    Reply::Status(code, text) => {
                                        return Ok(hyper::Response::builder()
                                            .status(code)
                                            .body(Full::new(Bytes::from(text)))
                                            .unwrap())
                                    }
                                }
                            }
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            received,
            stop: Some(stop),
        }
    }

    /// A bundler that answers `eth_sendUserOperation` with the JSON-RPC text `answer` holds when
    /// the call arrives (`{id}` replaced), and every other method with `null`: the recorded
    /// bundler's answer, set by a replay before each op.
    pub async fn replaying(answer: Arc<Mutex<String>>) -> Self {
        Self::start(move |r| {
            if r.method == "eth_sendUserOperation" {
                Reply::Json(answer.lock().unwrap().clone())
            } else {
                Reply::Json(r#"{"jsonrpc":"2.0","id":{id},"result":null}"#.into())
            }
        })
        .await
    }

    /// A bundler that answers every method with `result` (raw JSON text).
    pub async fn answering(result: &'static str) -> Self {
        Self::start(move |_| Reply::Json(format!(r#"{{"jsonrpc":"2.0","id":{{id}},"result":{result}}}"#))).await
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for FakeBundler {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A URL on 127.0.0.1 where nothing listens.
pub async fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/")
}

/// A running opgate.
pub struct Opgate {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Opgate {
    /// Starts opgate from TOML text (listen addresses are replaced by 127.0.0.1:0).
    pub async fn start_toml(toml: &str) -> Self {
        let config = Config::from_toml(toml, &Overrides::default()).expect("test config is valid");
        Self::start(config).await
    }

    /// Starts opgate in front of `upstreams` (one chain, id 1).
    pub async fn in_front_of(upstreams: &[String]) -> Self {
        let ov = Overrides {
            upstreams: upstreams.to_vec(),
            chain_id: Some(1),
            ..Default::default()
        };
        Self::start(Config::from_overrides(&ov).unwrap()).await
    }

    pub async fn start(config: Config) -> Self {
        Self::start_with_clock(config, Arc::new(opgate::clock::SystemClock)).await
    }

    /// Starts opgate with a given clock.
    pub async fn start_with_clock(config: Config, clock: Arc<dyn opgate::clock::Clock>) -> Self {
        Self::start_full(config, clock, None).await
    }

    /// Starts opgate with its admin API on `admin` too.
    pub async fn start_full(config: Config, clock: Arc<dyn opgate::clock::Clock>, admin: Option<TcpListener>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics_addr = metrics_listener.local_addr().unwrap();
        let mut app = App::build_with_clock(config, clock).await.expect("opgate builds");
        if let Some(l) = admin {
            app = app.with_admin(l, None);
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.run(listener, Some(metrics_listener), async move {
                let _ = stopped.await;
            })
            .await
            .expect("opgate runs");
        });
        Self {
            addr,
            metrics_addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Signals shutdown and returns the task that ends when opgate has drained.
    pub fn shutdown(&mut self) -> JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().expect("running")
    }

    pub async fn metrics(&self) -> String {
        let (status, body) = get(&format!("http://{}/metrics", self.metrics_addr)).await;
        assert_eq!(status, 200);
        body
    }
}

impl Drop for Opgate {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends a request; returns the status and body text. Bounded by 30 s.
async fn send(req: hyper::Request<Full<Bytes>>) -> (u16, String) {
    let fut = async {
        let resp = client().request(req).await.expect("server answers");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("answer within 30 s")
}

/// Sends a request; returns the status, the headers and the body text. Bounded by 30 s.
pub async fn request(req: hyper::Request<Full<Bytes>>) -> (u16, http::HeaderMap, String) {
    let fut = async {
        let resp = client().request(req).await.expect("server answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("answer within 30 s")
}

/// POSTs `body` as JSON; returns the status and body text.
pub async fn post(url: &str, body: impl Into<Bytes>) -> (u16, String) {
    send(
        hyper::Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(body.into()))
            .unwrap(),
    )
    .await
}

/// GETs `url`; returns the status and body text.
pub async fn get(url: &str) -> (u16, String) {
    send(hyper::Request::get(url).body(Full::new(Bytes::new())).unwrap()).await
}

/// Sends one JSON-RPC call with raw params and returns the parsed response.
pub async fn call(url: &str, method: &str, params: &str) -> Value {
    let body = format!(r#"{{"jsonrpc":"2.0","id":42,"method":"{method}","params":{params}}}"#);
    let (status, text) = post(url, body).await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// The raw text of the `result` member of a JSON-RPC response body.
pub fn raw_result(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct R<'a> {
        #[serde(borrow)]
        result: &'a serde_json::value::RawValue,
    }
    serde_json::from_str::<R<'_>>(body)
        .expect("a result")
        .result
        .get()
        .to_string()
}

/// The value of one sample in a Prometheus exposition, if present.
pub fn sample(exposition: &str, name_and_labels: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Deletes every Redis key under a test's prefix (the store wraps it, with what it owns, in a hash
/// tag: `{<prefix>}`, `{<prefix>a:<account>}`, `{<prefix>p}`, `{<prefix>rl}`).
pub fn redis_cleanup(prefix: &str) {
    let pattern = format!("{{{prefix}*");
    let keys = std::process::Command::new("redis-cli")
        .args(["--scan", "--pattern", &pattern])
        .output()
        .expect("redis-cli runs");
    let keys: Vec<String> = String::from_utf8_lossy(&keys.stdout)
        .lines()
        .map(str::to_string)
        .filter(|k| !k.is_empty())
        .collect();
    for chunk in keys.chunks(500) {
        let _ = std::process::Command::new("redis-cli").arg("del").args(chunk).output();
    }
}

/// The RPC form and EntryPoint of a recorded vector, as `eth_sendUserOperation` params text.
pub fn vector_params(name: &str) -> String {
    let v = vector(name);
    serde_json::json!([v["userOperation"], v["entryPoint"]["address"]]).to_string()
}

/// A free TCP port on 127.0.0.1.
pub async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// A child process this test started; killed (by its own handle) if the test ends early.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An `opgate serve` process on `config`, listening on a free port (and metrics on another):
/// `(process, port, metrics port)`. Wait for it with [`wait_healthy`].
pub async fn spawn_opgate(config: &std::path::Path) -> (Running, u16, u16) {
    let (port, metrics) = (free_port().await, free_port().await);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_opgate"))
        .args(["serve", "--config", config.to_str().expect("UTF-8 path")])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("opgate starts");
    (Running(child), port, metrics)
}

/// Waits until something accepts connections on `port` (bounded: 30 s).
pub async fn wait_healthy(port: u16) {
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing started listening on {port}");
}

/// A recorded vector's JSON.
pub fn vector(name: &str) -> Value {
    let path = format!("{}/tests/data/vectors/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Sends an admin API request with the bearer token; returns the status and JSON body.
pub async fn admin(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))
        .unwrap();
    let (status, text) = send(req).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}
