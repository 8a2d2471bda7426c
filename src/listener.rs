//! The client side of every listener (JSON-RPC, metrics, admin): what a connection may hold.
//!
//! A public endpoint meets clients that never finish a request. Each accepted connection is
//! [`Clients::admit`]ted — or closed at once — and then watched:
//!
//! - **per client address**: at most `max_connections_per_address` connections from one IP, checked
//!   before any work, so one address cannot take every slot;
//! - **at `max_connections`**: the idle keep-alive connection that has waited longest is closed to
//!   make room; only when none is idle is the new connection refused;
//! - **head timeout**: from the accept, or from the first byte of the next request on a kept-alive
//!   connection, the request head must arrive within `head_timeout`;
//! - **body timeout**: once a request's head has arrived, its body must arrive within
//!   `body_timeout`;
//! - **idle timeout**: a kept-alive connection with no request in progress is closed after
//!   `idle_timeout`.
//!
//! A sweeper ([`Clients::sweep`]) checks the open connections four times a second; a connection
//! told to close is dropped by its task, which closes the socket. Every close is counted in
//! `opgate_connections_closed_total{reason}`.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// How often the sweeper looks at the open connections.
pub const SWEEP: Duration = Duration::from_millis(250);

/// Limits on the client side of a listener (`[server]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Time to receive a request head.
    pub head_timeout: Duration,
    /// Keep-alive idle time between requests.
    pub idle_timeout: Duration,
    /// Time to receive a request's body once its head has arrived.
    pub body_timeout: Duration,
    /// Most open connections.
    pub max_connections: usize,
    /// Most open connections from one client address.
    pub per_address: usize,
}

/// Why opgate closed (or refused) a client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The request head did not arrive in time.
    HeadTimeout,
    /// A kept-alive connection stayed idle too long.
    IdleTimeout,
    /// The request body did not arrive in time.
    BodyTimeout,
    /// Its address already holds `max_connections_per_address` connections.
    PerAddressLimit,
    /// `max_connections` are open and none is idle (or it was the idle one closed to make room).
    MaxConnections,
}

impl CloseReason {
    /// Every reason, for metric pre-registration.
    pub const ALL: [Self; 5] = [
        Self::HeadTimeout,
        Self::IdleTimeout,
        Self::BodyTimeout,
        Self::PerAddressLimit,
        Self::MaxConnections,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HeadTimeout => "head_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::BodyTimeout => "body_timeout",
            Self::PerAddressLimit => "per_address_limit",
            Self::MaxConnections => "max_connections",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Where a connection is in its request cycle.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for (the rest of) a request head, since then.
    Head(Instant),
    /// Receiving a request's body, since its head arrived.
    Body(Instant),
    /// A request is being served.
    Busy,
    /// Kept alive with nothing in progress, since then.
    Idle(Instant),
}

#[derive(Debug)]
struct Conn {
    addr: IpAddr,
    phase: Mutex<Phase>,
    close: Notify,
    closed_for: Mutex<Option<CloseReason>>,
}

impl Conn {
    fn set(&self, p: Phase) {
        if let Ok(mut phase) = self.phase.lock() {
            *phase = p;
        }
    }

    fn phase(&self) -> Phase {
        self.phase.lock().map(|p| *p).unwrap_or(Phase::Busy)
    }

    /// Tells the connection's task to drop it; the first reason given is kept.
    fn close(&self, why: CloseReason) {
        if let Ok(mut c) = self.closed_for.lock() {
            c.get_or_insert(why);
        }
        self.close.notify_one();
    }
}

#[derive(Debug, Default)]
struct State {
    open: HashMap<u64, Arc<Conn>>,
    by_addr: HashMap<IpAddr, usize>,
}

impl State {
    fn remove(&mut self, id: u64) -> Option<Arc<Conn>> {
        let conn = self.open.remove(&id)?;
        if let Some(n) = self.by_addr.get_mut(&conn.addr) {
            *n -= 1;
            if *n == 0 {
                self.by_addr.remove(&conn.addr);
            }
        }
        Some(conn)
    }
}

/// The open connections of one listener and their limits.
#[derive(Debug)]
pub struct Clients {
    limits: ClientLimits,
    state: Mutex<State>,
    next: AtomicU64,
    closed: Vec<IntCounter>,
}

impl Clients {
    /// Connections under `limits`; `closed` holds one counter per [`CloseReason`], in
    /// [`CloseReason::ALL`] order.
    pub fn new(limits: ClientLimits, closed: Vec<IntCounter>) -> Arc<Self> {
        Arc::new(Self {
            limits,
            state: Mutex::new(State::default()),
            next: AtomicU64::new(0),
            closed,
        })
    }

    fn count(&self, why: CloseReason) {
        if let Some(c) = self.closed.get(why.index()) {
            c.inc();
        }
    }

    /// How many connections are open.
    pub fn open(&self) -> usize {
        self.state.lock().map(|s| s.open.len()).unwrap_or(0)
    }

    /// Admits a connection from `peer`, or says why it is refused (already counted). At
    /// `max_connections` the longest-idle kept-alive connection is closed to make room.
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Admitted, CloseReason> {
        let addr = peer.ip();
        let Ok(mut state) = self.state.lock() else {
            return Err(CloseReason::MaxConnections);
        };
        if state.by_addr.get(&addr).copied().unwrap_or(0) >= self.limits.per_address {
            drop(state);
            self.count(CloseReason::PerAddressLimit);
            return Err(CloseReason::PerAddressLimit);
        }
        if state.open.len() >= self.limits.max_connections {
            let victim = state
                .open
                .iter()
                .filter_map(|(id, c)| match c.phase() {
                    Phase::Idle(since) => Some((since, *id)),
                    _ => None,
                })
                .min()
                .map(|(_, id)| id);
            match victim.and_then(|id| state.remove(id)) {
                Some(conn) => {
                    conn.close(CloseReason::MaxConnections);
                    tracing::debug!(addr = %conn.addr, "closed an idle connection to make room");
                }
                None => {
                    drop(state);
                    self.count(CloseReason::MaxConnections);
                    return Err(CloseReason::MaxConnections);
                }
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            addr,
            phase: Mutex::new(Phase::Head(Instant::now())),
            close: Notify::new(),
            closed_for: Mutex::new(None),
        });
        state.open.insert(id, conn.clone());
        *state.by_addr.entry(addr).or_insert(0) += 1;
        Ok(Admitted {
            clients: self.clone(),
            id,
            conn,
        })
    }

    /// Closes connections past their head or idle timeout, every [`SWEEP`], until `stop`
    /// resolves.
    pub async fn sweep(self: Arc<Self>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => self.close_expired(Instant::now()),
            }
        }
    }

    fn close_expired(&self, now: Instant) {
        let Ok(state) = self.state.lock() else { return };
        for conn in state.open.values() {
            let why = match conn.phase() {
                Phase::Head(since) if now.duration_since(since) > self.limits.head_timeout => CloseReason::HeadTimeout,
                Phase::Idle(since) if now.duration_since(since) > self.limits.idle_timeout => CloseReason::IdleTimeout,
                Phase::Body(since) if now.duration_since(since) > self.limits.body_timeout => CloseReason::BodyTimeout,
                _ => continue,
            };
            conn.close(why);
        }
    }
}

/// An admitted connection: leaves the open set when dropped.
#[derive(Debug)]
pub struct Admitted {
    clients: Arc<Clients>,
    id: u64,
    conn: Arc<Conn>,
}

impl Admitted {
    /// `stream`, watched: bytes arriving on an idle connection start the head timeout.
    pub fn watch<S>(&self, stream: S) -> Watched<S> {
        Watched {
            inner: stream,
            conn: self.conn.clone(),
        }
    }

    /// Marks a request in progress until the returned guard is dropped (then idle).
    pub fn busy(&self) -> Busy {
        self.conn.set(Phase::Busy);
        Busy(self.conn.clone())
    }

    /// A handle for the connection's service, to mark requests in progress.
    pub fn requests(&self) -> Requests {
        Requests(self.conn.clone())
    }

    /// Resolves when the connection is to be closed; gives why.
    pub async fn closed(&self) -> CloseReason {
        self.conn.close.notified().await;
        self.conn
            .closed_for
            .lock()
            .ok()
            .and_then(|c| *c)
            .unwrap_or(CloseReason::IdleTimeout)
    }

    /// Runs `connection` until it ends or is told to close (then drops it, closing the socket),
    /// counting the close.
    pub async fn run<F: Future>(self, connection: F) -> Option<F::Output> {
        tokio::pin!(connection);
        tokio::select! {
            out = &mut connection => Some(out),
            why = self.closed() => {
                self.clients.count(why);
                tracing::debug!(addr = %self.conn.addr, reason = why.as_str(), "connection closed");
                None
            }
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut state) = self.clients.state.lock() {
            state.remove(self.id);
        }
    }
}

/// Marks requests on one connection as in progress.
#[derive(Debug, Clone)]
pub struct Requests(Arc<Conn>);

impl Requests {
    /// A request is in progress until the guard is dropped.
    pub fn busy(&self) -> Busy {
        self.0.set(Phase::Busy);
        Busy(self.0.clone())
    }

    /// `body`, watched: until it has been read to its end, the body timeout runs.
    pub fn body<B: hyper::body::Body>(&self, body: B) -> TimedBody<B> {
        let conn = (!body.is_end_stream()).then(|| {
            self.0.set(Phase::Body(Instant::now()));
            self.0.clone()
        });
        TimedBody { inner: body, conn }
    }
}

/// A request body whose end marks the connection busy (no longer receiving).
#[derive(Debug)]
pub struct TimedBody<B> {
    inner: B,
    /// Set until the body has ended.
    conn: Option<Arc<Conn>>,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for TimedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        let done = matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) || self.inner.is_end_stream();
        if done {
            if let Some(conn) = self.conn.take() {
                conn.set(Phase::Busy);
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A request in progress; the connection is idle again when this is dropped.
#[derive(Debug)]
pub struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.set(Phase::Idle(Instant::now()));
    }
}

/// A stream whose reads tell an idle connection that a new request head has begun.
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            if let Ok(mut phase) = self.conn.phase.lock() {
                if let Phase::Idle(_) = *phase {
                    *phase = Phase::Head(Instant::now());
                }
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(max: usize, per_address: usize) -> Arc<Clients> {
        let closed = CloseReason::ALL
            .iter()
            .map(|r| IntCounter::new(format!("closed_{}", r.as_str()), "test").unwrap())
            .collect();
        Clients::new(
            ClientLimits {
                head_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
                body_timeout: Duration::from_secs(30),
                max_connections: max,
                per_address,
            },
            closed,
        )
    }

    fn peer(last: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], 40000))
    }

    #[test]
    fn one_address_cannot_take_every_slot() {
        let c = clients(10, 2);
        let a = c.admit(peer(2)).unwrap();
        let _b = c.admit(peer(2)).unwrap();
        assert_eq!(c.admit(peer(2)).unwrap_err(), CloseReason::PerAddressLimit);
        assert!(c.admit(peer(1)).is_ok(), "another address is admitted");
        drop(a);
        assert!(c.admit(peer(2)).is_ok(), "a closed connection frees its address's slot");
        assert_eq!(c.closed[CloseReason::PerAddressLimit.index()].get(), 1);
    }

    #[test]
    fn at_the_limit_the_longest_idle_connection_makes_room() {
        let c = clients(2, 10);
        let busy = c.admit(peer(1)).unwrap();
        let _in_progress = busy.busy();
        let idle = c.admit(peer(2)).unwrap();
        drop(idle.busy());
        let newcomer = c.admit(peer(3)).unwrap();
        assert_eq!(c.open(), 2);
        assert_eq!(*idle.conn.closed_for.lock().unwrap(), Some(CloseReason::MaxConnections));
        // Nothing idle now: refused.
        let _work = newcomer.busy();
        assert_eq!(c.admit(peer(4)).unwrap_err(), CloseReason::MaxConnections);
        drop(idle);
        assert_eq!(c.open(), 2, "the evicted connection was already out of the count");
    }

    #[test]
    fn the_sweeper_closes_heads_and_idle_connections_past_their_time() {
        let c = clients(10, 10);
        let fresh = c.admit(peer(1)).unwrap();
        let idle = c.admit(peer(2)).unwrap();
        drop(idle.busy());
        let working = c.admit(peer(3)).unwrap();
        let _w = working.busy();
        let now = Instant::now();
        c.close_expired(now + Duration::from_secs(11));
        assert_eq!(*fresh.conn.closed_for.lock().unwrap(), Some(CloseReason::HeadTimeout));
        assert_eq!(*idle.conn.closed_for.lock().unwrap(), None);
        c.close_expired(now + Duration::from_secs(61));
        assert_eq!(*idle.conn.closed_for.lock().unwrap(), Some(CloseReason::IdleTimeout));
        assert_eq!(
            *working.conn.closed_for.lock().unwrap(),
            None,
            "a request in progress is left alone"
        );
        // A body still arriving after the body timeout.
        let slow = c.admit(peer(4)).unwrap();
        slow.conn.set(Phase::Body(now));
        c.close_expired(now + Duration::from_secs(31));
        assert_eq!(*slow.conn.closed_for.lock().unwrap(), Some(CloseReason::BodyTimeout));
    }
}
