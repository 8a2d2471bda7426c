//! Clients that never finish a request, against a real opgate on real sockets: other loopback
//! addresses (127.0.0.2, 127.0.0.3) stand for other clients. One address's flood of idle and
//! half-sent connections cannot keep another client from being answered; idle and half-sent
//! connections are closed after their timeouts; at `max_connections` an idle kept-alive
//! connection makes room for a new client.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{sample, FakeBundler, Opgate};

const CHAIN_ID: &str = r#"{"jsonrpc":"2.0","id":{id},"result":"0x1"}"#;

async fn opgate(server: &str) -> (Opgate, FakeBundler) {
    let bundler = FakeBundler::start(|_| crate::support::Reply::Json(CHAIN_ID.into())).await;
    let toml = format!(
        "[server]\n{server}\n[[chains]]\nid = 1\nupstreams = [\"{}\"]\n",
        bundler.url()
    );
    (Opgate::start_toml(&toml).await, bundler)
}

/// A connection to `to` from the loopback address `from`.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

fn request(body: &str) -> String {
    format!(
        "POST / HTTP/1.1\r\nHost: opgate\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"eth_chainId","params":[]}"#;

/// Sends one JSON-RPC call on `s` (kept alive) and reads the whole response.
async fn call_on(s: &mut TcpStream) -> String {
    s.write_all(request(CALL).as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&got).contains("\"result\"") {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, s.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Waits (at most `within`) for opgate to close `s`; returns how long that took.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        let left = within.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => panic!("still open after {within:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_does_not_stop_another_client() {
    let (opgate, _bundler) = opgate("head_timeout = \"30s\"\nidle_timeout = \"30s\"").await;
    // 1,200 connections from 127.0.0.2: idle ones and half-sent request heads.
    let mut flood = Vec::with_capacity(1200);
    for i in 0..1200 {
        let mut s = connect_from([127, 0, 0, 2], opgate.addr).await;
        if i % 2 == 1 {
            let _ = s.write_all(b"POST / HTTP/1.1\r\nHost: opgate\r\n").await;
        }
        flood.push(s);
    }
    // Another client is answered at once.
    let started = Instant::now();
    let mut other = connect_from([127, 0, 0, 3], opgate.addr).await;
    let answer = call_on(&mut other).await;
    assert!(answer.contains(r#""result":"0x1""#), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered after {:?}",
        started.elapsed()
    );
    let metrics = opgate.metrics().await;
    let refused = sample(
        &metrics,
        r#"opgate_connections_closed_total{reason="per_address_limit"}"#,
    )
    .unwrap();
    assert_eq!(refused, 1200.0 - 64.0, "all but 64 of the flood are refused at accept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_closed_after_their_timeouts() {
    let (opgate, _bundler) = opgate("head_timeout = \"1s\"\nidle_timeout = \"3s\"").await;
    let mut silent = connect_from([127, 0, 0, 2], opgate.addr).await;
    let mut half = connect_from([127, 0, 0, 2], opgate.addr).await;
    half.write_all(b"POST / HTTP/1.1\r\nHost: opgate\r\nContent-")
        .await
        .unwrap();
    let mut kept = connect_from([127, 0, 0, 3], opgate.addr).await;
    let answer = call_on(&mut kept).await;
    assert!(answer.contains("0x1"), "{answer}");
    let answered = Instant::now();

    // Nothing, or half a head: closed after the head timeout (1 s, swept every 250 ms).
    let t = closed_within(&mut silent, Duration::from_secs(4)).await;
    assert!(t >= Duration::from_millis(500), "closed too early: {t:?}");
    closed_within(&mut half, Duration::from_secs(4)).await;

    // A kept-alive connection is not held to the head timeout between requests: it still
    // answers past it, then is closed once idle for the idle timeout.
    // Idle for longer than the head timeout before the next request (the scenario, not a
    // wait for something to happen).
    tokio::time::sleep(Duration::from_millis(1600).saturating_sub(answered.elapsed())).await;
    let again = call_on(&mut kept).await;
    assert!(again.contains("0x1"), "{again}");
    let t = closed_within(&mut kept, Duration::from_secs(6)).await;
    assert!(t >= Duration::from_secs(2), "idle connection closed after {t:?}");

    let metrics = opgate.metrics().await;
    assert_eq!(
        sample(&metrics, r#"opgate_connections_closed_total{reason="head_timeout"}"#),
        Some(2.0)
    );
    assert_eq!(
        sample(&metrics, r#"opgate_connections_closed_total{reason="idle_timeout"}"#),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_max_connections_an_idle_connection_makes_room() {
    let (opgate, _bundler) = opgate("max_connections = 3\nhead_timeout = \"30s\"\nidle_timeout = \"30s\"").await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from([127, 0, 0, 2], opgate.addr).await;
        call_on(&mut s).await;
        idle.push(s);
    }
    // A fourth client is served; the connection idle the longest is closed for it.
    let mut newcomer = connect_from([127, 0, 0, 3], opgate.addr).await;
    let answer = call_on(&mut newcomer).await;
    assert!(answer.contains("0x1"), "{answer}");
    closed_within(&mut idle[0], Duration::from_secs(2)).await;
    let metrics = opgate.metrics().await;
    assert_eq!(
        sample(&metrics, r#"opgate_connections_closed_total{reason="max_connections"}"#),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_cut_off() {
    let (opgate, _bundler) = opgate("head_timeout = \"30s\"\nbody_timeout = \"1s\"").await;
    let mut s = connect_from([127, 0, 0, 2], opgate.addr).await;
    s.write_all(b"POST / HTTP/1.1\r\nHost: opgate\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        .await
        .unwrap();
    // One byte every 200 ms (bounded: 40 bytes, 8 s), until opgate closes the connection.
    let start = Instant::now();
    let mut closed = None;
    for _ in 0..40 {
        if s.write_all(b" ").await.is_err() {
            closed = Some(start.elapsed());
            break;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = Some(start.elapsed());
                break;
            }
            _ => {}
        }
    }
    let closed = closed.expect("a body trickled for 8 s was not cut off");
    assert!(closed >= Duration::from_millis(900), "cut off too early: {closed:?}");
    let metrics = opgate.metrics().await;
    assert_eq!(
        sample(&metrics, r#"opgate_connections_closed_total{reason="body_timeout"}"#),
        Some(1.0)
    );
}
