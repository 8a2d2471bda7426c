//! A counting proxy between a bench and Redis: it parses the RESP commands the redis crate sends
//! and counts them by name and, for key reads and writes, by the kind of key, so a bench can tell
//! how many store round trips one request makes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub(crate) type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

/// The label of one RESP command: its name, and for key reads and writes the kind of key
/// (`version`, `perm`, `rl`, …: what follows the `{prefix}` hash tag, up to `:`).
pub(crate) fn label(parts: &[&[u8]]) -> String {
    let name = parts
        .first()
        .map(|n| String::from_utf8_lossy(n).to_ascii_uppercase())
        .unwrap_or_default();
    let keyed = matches!(name.as_str(), "GET" | "MGET" | "SET" | "DEL" | "HGETALL" | "HMGET");
    match parts.get(1).filter(|_| keyed) {
        Some(key) => {
            let key = String::from_utf8_lossy(key);
            let after = key.split_once('}').map_or(key.as_ref(), |(_, rest)| rest);
            format!("{name} {}", after.split(':').next().unwrap_or(after))
        }
        None => name,
    }
}

/// A parsed command: its first two elements, and its length in bytes.
pub(crate) type Command<'a> = (Vec<&'a [u8]>, usize);

/// Parses one RESP array command from the front of `buf` (`None`: incomplete).
pub(crate) fn parse_command(buf: &[u8]) -> Option<Result<Command<'_>, ()>> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        Some((&buf[at..at + end], at + end + 2))
    }
    let (head, mut at) = line(buf, 0)?;
    let Some(n) = head
        .strip_prefix(b"*")
        .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
    else {
        return Some(Err(()));
    };
    let mut parts = Vec::new();
    for _ in 0..n {
        let (len, next) = line(buf, at)?;
        let Some(len) = len
            .strip_prefix(b"$")
            .and_then(|l| std::str::from_utf8(l).ok()?.parse::<usize>().ok())
        else {
            return Some(Err(()));
        };
        let end = next + len + 2;
        if buf.len() < end {
            return None;
        }
        if parts.len() < 2 {
            parts.push(&buf[next..next + len]);
        }
        at = end;
    }
    Some(Ok((parts, at)))
}

/// Relays one connection to Redis, counting the commands the client sends by label.
pub(crate) async fn proxy_connection(client: TcpStream, upstream: SocketAddr, counts: Counts) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let answers = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_rx, &mut client_tx).await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match client_rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if server_tx.write_all(&buf[..n]).await.is_err() {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        let mut consumed = 0;
        while let Some(parsed) = parse_command(&pending[consumed..]) {
            let l = match parsed {
                Ok((parts, len)) => {
                    consumed += len;
                    label(&parts)
                }
                Err(()) => {
                    // Not RESP as the redis crate sends it: count it and stop parsing this chunk.
                    consumed = pending.len();
                    "(unparsed)".into()
                }
            };
            if let Ok(mut c) = counts.lock() {
                *c.entry(l).or_default() += 1;
            }
        }
        pending.drain(..consumed);
    }
    answers.abort();
}

/// Accepts proxy connections until aborted.
pub(crate) async fn serve_proxy(listener: TcpListener, upstream: SocketAddr, counts: Counts) {
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        while connections.try_join_next().is_some() {}
        connections.spawn(proxy_connection(stream, upstream, counts.clone()));
    }
}
