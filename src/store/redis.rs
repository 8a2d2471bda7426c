//! The Redis backend, shared by replicas: every replica pointed at the same servers and prefix sees
//! the same counters, reservations, revocations and registry. The servers are one Redis, a Redis
//! Cluster or a Sentinel-managed primary ([`super::target`]).
//!
//! # Key layout
//!
//! Every key begins with a hash tag that decides its Cluster slot. With the prefix `opgate:`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{opgate:a:<account>}c:l:<counter>` | string | a lifetime counter of the account: decimal |
//! | `{opgate:a:<account>}c:f<period>:<id>:<counter>` | string | a fixed window's counter, `id = now / period`: decimal; expires an hour after the window ends |
//! | `{opgate:a:<account>}c:a<period>:<counter>` | string | an anchored window: `<end>:<used>`; expires an hour after `end` |
//! | `{opgate:a:<account>}c:s<start_at>+<interval>:<counter>` | string | a schedule's count: decimal |
//! | `{opgate:a:<account>}op:<0x op hash>` | hash | a reservation: `s` (`r` reserved, `c` committed), `x` (expiry stamp on the callers' clock), `t` (the attempt that may refund it; empty once another send relied on it), `n` (charges), and per charge `k<i>` (counter key), `a<i>` (amount), `e<i>` (anchored window end, else empty); expires after the dedupe TTL |
//! | `{opgate:p}c:…`, `{opgate:p}op:<0x op hash>` | | the same for shared counters ([`Scope::Shared`]) and, on a cluster, the shared part of a reservation |
//! | `{opgate:rl}<limit>` | string | a request limit's theoretical arrival time (µs) |
//! | `{opgate:}revoked` | hash | subject → Unix time of its revocation |
//! | `{opgate:}perm:<key>` | string | a registry entry |
//! | `{opgate:}version` | string | the registry version, `INCR`ed on every put, delete, revoke and unrevoke |
//!
//! `<account>` is the op's sender in lowercase hex. An account's counters and op records share
//! its slot, so accounts spread over a cluster's shards while one account's reservation stays one
//! script on one shard. Numbers are decimal strings: the scripts add, subtract and compare them
//! exactly (Lua's numbers are doubles). Expiries are relative (`EX`, `EXPIRE`: the window end minus
//! the caller's `now`, plus the grace), never absolute, since time is the caller's clock and not
//! the server's.
//!
//! # Commands
//!
//! On one server (or a Sentinel primary) [`RedisStore::reserve`] is one script (`EVALSHA`, loaded
//! on first use) over every key it needs, revocations included: one round trip. On a cluster, the
//! account's part is one script on the account's shard while the revocations are read from theirs
//! at the same time (still one round trip); an op that also charges shared counters reserves them
//! in a second script on their shard, and gives the first part back if the second refuses.
//! [`RedisStore::refund`] reads the op record, then runs a script over the keys it names, which
//! checks the record is still the one read and still the attempt's to refund (two round trips, off
//! the hot path). [`RedisStore::usage`] is one `MGET` (split by slot on a cluster). Registry and
//! revocation writes bump the version in the same `MULTI`.
//!
//! # Durability
//!
//! Redis replicates asynchronously: a primary that dies can take its last writes with it, and a
//! replica promoted in its place never saw them. With [`Durability::Replica`] every reservation
//! is sent with `WAIT 1 <timeout>` in the same round trip, on the same node, and counts only once a
//! replica has it: a reservation a replica has not acknowledged is a store failure (the op is
//! decided by `on_error`, and its charge is taken back), so a failover never loses a charge an op
//! was relayed on. With [`Durability::Primary`] (the default) a failover can lose the charges of
//! the ops relayed in the last moments before it (Redis's replication lag, usually well under a
//! second), and the limits they counted against may admit that many ops again.
//!
//! # Failures
//!
//! Every call is bounded by the configured timeout ([`StoreError::Timeout`]); a connection that
//! cannot be made or breaks is [`StoreError::Unavailable`], an unexpected answer
//! [`StoreError::Protocol`]. Connections are made lazily, on the first call, and again after they
//! break, on a later call: a store whose servers are not up yet starts anyway (its calls fail until
//! they answer) and recovers by itself, after a failover too.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use ::redis::{ErrorKind, RedisError, RedisResult, Script, ServerErrorKind, Value};
use alloy_primitives::{Address, B256, U256};

use super::layout::{self, counter_key};
use super::target::{Conn, ConnectOptions, Target, Topology};
use super::{CounterRef, Reservation, Reserved, Scope, StoreError, Ticket, Usage, Window};

/// How often a refund reads the op record again when it changed between the read and the script.
const REFUND_ATTEMPTS: usize = 4;

/// When a reservation counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Once the primary has it (the default).
    #[default]
    Primary,
    /// Once a replica acknowledged it too (`WAIT 1`).
    Replica,
}

/// How a [`RedisStore`] behaves.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Key prefix (non-empty, no braces).
    pub prefix: String,
    /// Bounds every call.
    pub timeout: Duration,
    /// How long op hashes are remembered.
    pub dedupe_ttl: Duration,
    /// When a reservation counts.
    pub durability: Durability,
    /// PEM certificates TLS servers are verified with (instead of the web roots).
    pub ca_pem: Option<Vec<u8>>,
}

/// A Lua script: its source and its SHA-1, loaded on first use on each node.
struct Lua {
    script: Script,
    code: &'static str,
}

impl Lua {
    fn new(code: &'static str) -> Self {
        Self {
            script: Script::new(code),
            code,
        }
    }
}

/// Counters, reservations, revocations and the registry in Redis.
pub struct RedisStore {
    conn: Conn,
    topology: Topology,
    prefix: String,
    /// `{<prefix>}`: the tag of the registry and the revocations.
    tag: String,
    timeout: Duration,
    dedupe_ttl: u64,
    durability: Durability,
    /// Connections dropped after a failure.
    reconnects: std::sync::atomic::AtomicU64,
    reserve: Lua,
    refund: Lua,
    commit: Lua,
    rate: Lua,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("topology", &self.topology)
            .field("tag", &self.tag)
            .field("timeout", &self.timeout)
            .field("dedupe_ttl", &self.dedupe_ttl)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

/// One script call: the keys and arguments of a reservation's part.
struct Part {
    record: String,
    keys: Vec<String>,
    args: Vec<String>,
    /// For each charge of the part, its index among the reservation's charges.
    index: Vec<usize>,
}

impl RedisStore {
    /// A store on the single server at `url` (see [`RedisStore::connect_with`] for every form).
    pub async fn connect(url: &str, prefix: &str, timeout: Duration, dedupe_ttl: Duration) -> Result<Self, StoreError> {
        let target = Target::parse(url).map_err(|e| StoreError::Unavailable(format!("invalid Redis URL: {e}")))?;
        Self::connect_with(
            &target,
            RedisOptions {
                prefix: prefix.to_owned(),
                timeout,
                dedupe_ttl,
                durability: Durability::Primary,
                ca_pem: None,
            },
        )
        .await
    }

    /// A store on `target`, its keys tagged with `o.prefix`, every call bounded by `o.timeout`, op
    /// hashes remembered for `o.dedupe_ttl` (whole seconds, at least 1).
    ///
    /// Fails only on a malformed prefix (which must be non-empty and hold no `{` or `}`) or
    /// settings the redis crate refuses. The servers need not be up: this tries one `PING`
    /// (bounded by the timeout) and logs a warning if it fails; the connection is then made by a
    /// later call, and every call until then fails with [`StoreError::Unavailable`] or
    /// [`StoreError::Timeout`].
    pub async fn connect_with(target: &Target, o: RedisOptions) -> Result<Self, StoreError> {
        let prefix = o.prefix;
        if prefix.is_empty() || prefix.contains(['{', '}']) {
            return Err(StoreError::Unavailable(format!(
                "invalid key prefix {prefix:?}: it must be non-empty and hold no braces"
            )));
        }
        let conn = Conn::new(
            target,
            &ConnectOptions {
                timeout: o.timeout,
                ca_pem: o.ca_pem,
            },
        )
        .map_err(StoreError::Unavailable)?;
        let store = Self {
            conn,
            topology: target.topology,
            tag: format!("{{{prefix}}}"),
            prefix,
            timeout: o.timeout,
            dedupe_ttl: o.dedupe_ttl.as_secs().clamp(1, layout::MAX_TTL_SECS),
            durability: o.durability,
            reconnects: std::sync::atomic::AtomicU64::new(0),
            reserve: Lua::new(concat!(include_str!("decimal.lua"), include_str!("reserve.lua"))),
            refund: Lua::new(concat!(include_str!("decimal.lua"), include_str!("refund.lua"))),
            commit: Lua::new(include_str!("commit.lua")),
            rate: Lua::new(include_str!("rate.lua")),
        };
        if let Err(e) = store.ping().await {
            tracing::warn!(error = %e, topology = store.topology.as_str(), "Redis store not reachable yet; connecting on later calls");
        }
        Ok(store)
    }

    fn lost(&self, e: Option<&RedisError>) {
        if self.conn.lost(e) {
            self.reconnects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// How many times a failure (a server gone, a failover, a timeout) dropped the connection, to be
    /// made again by a later call.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How the servers are arranged.
    pub fn topology(&self) -> Topology {
        self.topology
    }

    /// When a reservation counts.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// A key under the registry's tag.
    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.tag)
    }

    /// The hash tag of `scope`'s keys for `account`.
    fn owner_tag(&self, scope: Scope, account: Address) -> String {
        format!("{{{}{}}}", self.prefix, layout::owner(scope, account))
    }

    fn op_key(&self, scope: Scope, account: Address, op: B256) -> String {
        format!("{}op:{op}", self.owner_tag(scope, account))
    }

    fn counter(&self, scope: Scope, account: Address, name: &str, window: &Window, now: u64) -> String {
        format!("{}{}", self.owner_tag(scope, account), counter_key(name, window, now))
    }

    /// Runs `f` on a handle of the shared connection, bounded by the timeout.
    async fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.run_raw(f).await.map_err(|e| self.failure(e))
    }

    /// [`RedisStore::run`], keeping the redis error for the caller to look at.
    async fn run_raw<T, F, Fut>(&self, f: F) -> Result<T, Result<RedisError, StoreError>>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, f(self.conn.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                self.lost(Some(&e));
                Err(Ok(e))
            }
            Err(_) => {
                self.lost(None);
                Err(Err(StoreError::Timeout(millis(self.timeout))))
            }
        }
    }

    fn failure(&self, e: Result<RedisError, StoreError>) -> StoreError {
        match e {
            Ok(e) => self.error(e),
            Err(e) => e,
        }
    }

    async fn query(&self, cmd: ::redis::Cmd) -> Result<Value, StoreError> {
        self.run(|mut conn| async move { cmd.query_async::<Value>(&mut conn).await })
            .await
    }

    fn error(&self, e: RedisError) -> StoreError {
        if e.is_timeout() {
            return StoreError::Timeout(millis(self.timeout));
        }
        match e.kind() {
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType => StoreError::Protocol(e.to_string()),
            _ => StoreError::Unavailable(e.to_string()),
        }
    }

    /// Runs `lua` on the node serving `keys[0]` (loading it there first if it is not), followed
    /// in the same round trip by `WAIT 1` when `durable`; a write no replica acknowledged in time
    /// is an error.
    async fn eval(&self, lua: &Lua, keys: &[String], args: &[String], durable: bool) -> Result<Value, StoreError> {
        // One bound for the whole call, loading the script included.
        match tokio::time::timeout(self.timeout, self.eval_once(lua, keys, args, durable)).await {
            Ok(answer) => answer,
            Err(_) => {
                self.lost(None);
                Err(StoreError::Timeout(millis(self.timeout)))
            }
        }
    }

    async fn eval_once(&self, lua: &Lua, keys: &[String], args: &[String], durable: bool) -> Result<Value, StoreError> {
        let route = keys.first().cloned().unwrap_or_default();
        let mut pipe = ::redis::pipe();
        pipe.cmd("EVALSHA")
            .arg(lua.script.get_hash())
            .arg(keys.len())
            .arg(keys)
            .arg(args);
        if durable {
            // Within the call's own timeout, so that a missing replica is named as such.
            pipe.cmd("WAIT").arg(1).arg((millis(self.timeout) * 3 / 4).max(1));
        }
        let send = |pipe: ::redis::Pipeline| {
            let route = route.clone();
            self.run_raw(move |mut conn| async move { conn.pipeline_at(&route, &pipe).await })
        };
        let no_script = |r: &Result<Vec<Value>, Result<RedisError, StoreError>>| match r {
            Ok(values) => {
                matches!(values.first(), Some(Value::ServerError(e)) if e.kind() == Some(ServerErrorKind::NoScript))
            }
            Err(Ok(e)) => e.kind() == ErrorKind::Server(ServerErrorKind::NoScript),
            Err(Err(_)) => false,
        };
        let mut answer = send(pipe.clone()).await;
        if no_script(&answer) {
            // A node that has not seen the script yet (a new or promoted primary): load it there.
            let mut load = ::redis::pipe();
            load.cmd("SCRIPT").arg("LOAD").arg(lua.code);
            send(load).await.map_err(|e| self.failure(e))?;
            answer = send(pipe).await;
        }
        let mut replies = answer.map_err(|e| self.failure(e))?;
        if replies.is_empty() {
            return Err(StoreError::Protocol("a script answered nothing".into()));
        }
        let reply = replies.swap_remove(0);
        if let Value::ServerError(e) = reply {
            let e: RedisError = e.into();
            self.lost(Some(&e));
            return Err(self.error(e));
        }
        if durable {
            match replies.first() {
                Some(Value::Int(n)) if *n >= 1 => {}
                Some(Value::Int(_)) => {
                    return Err(StoreError::Unavailable(format!(
                        "no replica acknowledged the reservation within {} ms ([store] durability = \"replica\")",
                        (millis(self.timeout) * 3 / 4).max(1)
                    )))
                }
                other => return Err(StoreError::Protocol(format!("WAIT answered {other:?}"))),
            }
        }
        Ok(reply)
    }

    /// The script call reserving `charges` (those of `index`) under `record`; with `guards`, the
    /// revocations are checked in the same script.
    fn part(&self, r: &Reservation<'_>, record: String, index: Vec<usize>, guards: &[String], adopt: bool) -> Part {
        let now = r.now;
        let mut keys = vec![record.clone()];
        if !guards.is_empty() {
            keys.push(self.key("revoked"));
        }
        let mut args = vec![
            now.to_string(),
            now.saturating_add(self.dedupe_ttl).to_string(),
            self.dedupe_ttl.to_string(),
            r.attempt.max(1).to_string(),
            if adopt { "1" } else { "0" }.to_owned(),
            guards.len().to_string(),
        ];
        args.extend(guards.iter().cloned());
        for &i in &index {
            let charge = &r.charges[i];
            keys.push(self.counter(charge.scope, r.account, &charge.counter, &charge.window, now));
            let (kind, a, b) = match charge.window {
                Window::Lifetime => ("l", 0, 0),
                Window::Fixed { period } => {
                    let end = layout::fixed_window(period, now).1;
                    ("f", end, layout::ttl_after(now, end).unwrap_or(0))
                }
                Window::Anchored { period } => {
                    let end = now.saturating_add(layout::period(period));
                    ("a", end, layout::ttl_after(now, end).unwrap_or(0))
                }
                Window::Schedule { start_at, interval } => ("s", start_at, interval),
            };
            args.extend([
                kind.to_owned(),
                charge.amount.to_string(),
                charge.limit.to_string(),
                a.to_string(),
                b.to_string(),
            ]);
        }
        Part {
            record,
            keys,
            args,
            index,
        }
    }

    async fn run_part(&self, part: &Part, guards: usize) -> Result<Reserved, StoreError> {
        let durable = self.durability == Durability::Replica;
        let reply = self.eval(&self.reserve, &part.keys, &part.args, durable).await?;
        let reserved = parse_reserved(reply, part.index.len(), guards)?;
        // Indexes within the part back to indexes within the reservation.
        Ok(match reserved {
            Reserved::Exceeded { index, used, resets_at } => Reserved::Exceeded {
                index: part.index[index],
                used,
                resets_at,
            },
            Reserved::NotYetAvailable { index, available_at } => Reserved::NotYetAvailable {
                index: part.index[index],
                available_at,
            },
            other => other,
        })
    }

    /// See [`Store::reserve`](super::Store::reserve).
    pub async fn reserve(&self, r: &Reservation<'_>) -> Result<Reserved, StoreError> {
        let home = self.op_key(Scope::Account, r.account, r.op);
        if self.topology != Topology::Cluster {
            // Every key on one node: one script, revocations included.
            let part = self.part(r, home, super::check_order(r.charges).collect(), r.guards, false);
            return self.run_part(&part, r.guards.len()).await;
        }
        let (own, shared): (Vec<usize>, Vec<usize>) =
            (0..r.charges.len()).partition(|i| r.charges[*i].scope == Scope::Account);
        let first = self.part(r, home, own, &[], false);
        let (reserved, revoked) = if r.guards.is_empty() {
            (self.run_part(&first, 0).await, Ok(None))
        } else {
            futures::join!(self.run_part(&first, 0), self.revoked(r.guards))
        };
        let ticket = r.ticket();
        let reserved = reserved?;
        match (&reserved, revoked) {
            (Reserved::Charged, Ok(Some(index))) => {
                self.give_back(&first.record, ticket.attempt).await;
                return Ok(Reserved::Revoked { index });
            }
            (_, Ok(Some(index))) => return Ok(Reserved::Revoked { index }),
            (Reserved::Charged, Err(e)) => {
                self.give_back(&first.record, ticket.attempt).await;
                return Err(e);
            }
            (_, Err(e)) => return Err(e),
            (Reserved::Charged, Ok(None)) => {}
            (_, Ok(None)) => return Ok(reserved),
        }
        if shared.is_empty() {
            return Ok(Reserved::Charged);
        }
        let second = self.part(r, self.op_key(Scope::Shared, r.account, r.op), shared, &[], true);
        match self.run_part(&second, 0).await {
            Ok(Reserved::Charged | Reserved::AlreadyCharged) => Ok(Reserved::Charged),
            Ok(refused) => {
                self.give_back(&first.record, ticket.attempt).await;
                Ok(refused)
            }
            Err(e) => {
                // The second part may have run: take back both.
                futures::join!(
                    self.give_back(&first.record, ticket.attempt),
                    self.give_back(&second.record, ticket.attempt)
                );
                Err(e)
            }
        }
    }

    /// Refunds the first part of a reservation whose second part refused; a failure leaves the
    /// charge in place (never over-granting) and is logged.
    async fn give_back(&self, record: &str, attempt: u64) {
        if let Err(e) = self.refund_record(record, attempt).await {
            tracing::warn!(error = %e, record, "could not give back part of a refused reservation; its charge stays");
        }
    }

    /// See [`Store::commit`](super::Store::commit).
    pub async fn commit(&self, t: &Ticket) -> Result<(), StoreError> {
        let home = self.commit_record(self.op_key(Scope::Account, t.account, t.op));
        if self.topology == Topology::Cluster && t.shared {
            let (a, b) = futures::join!(home, self.commit_record(self.op_key(Scope::Shared, t.account, t.op)));
            a.and(b)
        } else {
            home.await
        }
    }

    async fn commit_record(&self, record: String) -> Result<(), StoreError> {
        self.eval(&self.commit, &[record], &[], false).await?;
        Ok(())
    }

    /// See [`Store::rate_limit`](super::Store::rate_limit): `(key, interval, tolerance)` in
    /// microseconds; answers the wait in microseconds (0: admitted).
    pub async fn rate_limit(&self, limits: &[(&str, u64, u64)], now_us: u64) -> Result<u64, StoreError> {
        if limits.is_empty() {
            return Ok(0);
        }
        let tag = format!("{{{}rl}}", self.prefix);
        let mut keys = Vec::with_capacity(limits.len());
        let mut args = vec![now_us.to_string()];
        for (k, interval, tolerance) in limits {
            keys.push(format!("{tag}{k}"));
            args.push(interval.to_string());
            args.push(tolerance.to_string());
        }
        match self.eval(&self.rate, &keys, &args, false).await? {
            Value::Int(n) => Ok(u64::try_from(n).unwrap_or(0)),
            other => Err(StoreError::Protocol(format!("the rate script answered {other:?}"))),
        }
    }

    /// See [`Store::refund`](super::Store::refund).
    pub async fn refund(&self, t: &Ticket) -> Result<bool, StoreError> {
        // Sequential on a cluster: the account's part first, then the shared part.
        let home_key = self.op_key(Scope::Account, t.account, t.op);
        let home = self.refund_record(&home_key, t.attempt);
        let refunded = home.await?;
        if refunded && self.topology == Topology::Cluster && t.shared {
            // The shared part goes back only with the account's part: the account's record says
            // whether this attempt may refund at all (not committed, not relied on).
            let shared = self.op_key(Scope::Shared, t.account, t.op);
            if let Err(e) = self.refund_record(&shared, t.attempt).await {
                tracing::warn!(error = %e, op = %t.op, "could not refund the shared part of a reservation; its charge stays");
            }
        }
        Ok(refunded)
    }

    async fn refund_record(&self, op_key: &str, attempt: u64) -> Result<bool, StoreError> {
        for _ in 0..REFUND_ATTEMPTS {
            let record = self.query(cmd("HGETALL").arg(op_key).clone()).await?;
            let Some(keys) = reserved_keys(record, attempt)? else {
                return Ok(false);
            };
            let mut all = Vec::with_capacity(keys.len() + 1);
            all.push(op_key.to_owned());
            all.extend(keys);
            let reply = self.eval(&self.refund, &all, &[attempt.to_string()], false).await?;
            match status(&reply)? {
                "refunded" => return Ok(true),
                "none" => return Ok(false),
                "changed" => continue,
                "bad" => return Err(bad(&reply)),
                other => return Err(StoreError::Protocol(format!("refund answered {other:?}"))),
            }
        }
        Err(StoreError::Protocol(format!(
            "op record {op_key} kept changing during a refund"
        )))
    }

    /// See [`Store::usage`](super::Store::usage).
    pub async fn usage(&self, account: Address, counters: &[CounterRef], now: u64) -> Result<Vec<Usage>, StoreError> {
        if counters.is_empty() {
            return Ok(Vec::new());
        }
        let mut mget = cmd("MGET");
        for c in counters {
            mget.arg(self.counter(c.scope, account, &c.counter, &c.window, now));
        }
        let values = array(self.query(mget).await?, counters.len())?;
        counters
            .iter()
            .zip(values)
            .map(|(c, value)| {
                let stored = opt_text(&value)?;
                let (used, end) = match (&c.window, stored) {
                    (_, None) => (U256::ZERO, None),
                    (Window::Anchored { .. }, Some(s)) => {
                        let (end, used) = s
                            .split_once(':')
                            .ok_or_else(|| StoreError::Protocol(format!("malformed anchored counter {s:?}")))?;
                        (decimal(used)?, Some(secs(end)?))
                    }
                    (_, Some(s)) => (decimal(s)?, None),
                };
                Ok(layout::usage_of(&c.window, now, used, end))
            })
            .collect()
    }

    /// See [`Store::revoked`](super::Store::revoked).
    pub async fn revoked(&self, guards: &[String]) -> Result<Option<usize>, StoreError> {
        if guards.is_empty() {
            return Ok(None);
        }
        let mut hmget = cmd("HMGET");
        hmget.arg(self.key("revoked")).arg(guards);
        let values = array(self.query(hmget).await?, guards.len())?;
        Ok(values.iter().position(|v| !matches!(v, Value::Nil)))
    }

    /// See [`Store::revoke`](super::Store::revoke).
    pub async fn revoke(&self, guard: &str, now: u64) -> Result<(), StoreError> {
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("HSETNX")
            .arg(self.key("revoked"))
            .arg(guard)
            .arg(now)
            .cmd("INCR")
            .arg(self.key("version"));
        self.transaction(pipe, 2).await?;
        Ok(())
    }

    /// See [`Store::unrevoke`](super::Store::unrevoke).
    pub async fn unrevoke(&self, guard: &str) -> Result<bool, StoreError> {
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("HDEL")
            .arg(self.key("revoked"))
            .arg(guard)
            .cmd("INCR")
            .arg(self.key("version"));
        let replies = self.transaction(pipe, 2).await?;
        Ok(int(&replies[0])? > 0)
    }

    /// See [`Store::list_revoked`](super::Store::list_revoked).
    pub async fn list_revoked(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let reply = self.query(cmd("HGETALL").arg(self.key("revoked")).clone()).await?;
        let mut list = pairs(reply)?
            .into_iter()
            .map(|(guard, at)| Ok((guard, secs(&at)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        list.sort();
        Ok(list)
    }

    /// See [`Store::put_permission`](super::Store::put_permission).
    pub async fn put_permission(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(self.key(&format!("perm:{key}")))
            .arg(value)
            .cmd("INCR")
            .arg(self.key("version"));
        self.transaction(pipe, 2).await?;
        Ok(())
    }

    /// See [`Store::get_permission`](super::Store::get_permission).
    pub async fn get_permission(&self, key: &str) -> Result<Option<String>, StoreError> {
        let reply = self
            .query(cmd("GET").arg(self.key(&format!("perm:{key}"))).clone())
            .await?;
        Ok(opt_text(&reply)?.map(str::to_owned))
    }

    /// See [`Store::delete_permission`](super::Store::delete_permission).
    pub async fn delete_permission(&self, key: &str) -> Result<bool, StoreError> {
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(self.key(&format!("perm:{key}")))
            .cmd("INCR")
            .arg(self.key("version"));
        let replies = self.transaction(pipe, 2).await?;
        Ok(int(&replies[0])? > 0)
    }

    /// See [`Store::version`](super::Store::version).
    pub async fn version(&self) -> Result<u64, StoreError> {
        let reply = self.query(cmd("GET").arg(self.key("version")).clone()).await?;
        opt_text(&reply)?.map_or(Ok(0), secs)
    }

    /// See [`Store::ping`](super::Store::ping).
    /// On a cluster, every primary must answer.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self.run(|mut conn| async move { conn.ping_all().await }).await? {
            Value::SimpleString(s) if s == "PONG" => Ok(()),
            Value::Okay => Ok(()),
            other => Err(StoreError::Protocol(format!("PING answered {other:?}"))),
        }
    }

    /// Runs a `MULTI` … `EXEC` of `n` commands and returns their replies.
    async fn transaction(&self, pipe: ::redis::Pipeline, n: usize) -> Result<Vec<Value>, StoreError> {
        let reply = self
            .run(|mut conn| async move { pipe.query_async::<Value>(&mut conn).await })
            .await?;
        array(reply, n)
    }
}

fn cmd(name: &str) -> ::redis::Cmd {
    ::redis::cmd(name)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn protocol(what: &str, value: &Value) -> StoreError {
    StoreError::Protocol(format!("expected {what}, got {value:?}"))
}

/// An array of exactly `n` values.
fn array(value: Value, n: usize) -> Result<Vec<Value>, StoreError> {
    match value {
        Value::Array(values) | Value::Set(values) if values.len() == n => Ok(values),
        other => Err(protocol(&format!("an array of {n}"), &other)),
    }
}

fn int(value: &Value) -> Result<i64, StoreError> {
    match value {
        Value::Int(i) => Ok(*i),
        other => Err(protocol("an integer", other)),
    }
}

/// A string reply, or `None` for nil.
fn opt_text(value: &Value) -> Result<Option<&str>, StoreError> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|_| protocol("UTF-8 text", value)),
        Value::SimpleString(s) => Ok(Some(s)),
        other => Err(protocol("a string", other)),
    }
}

fn text(value: &Value) -> Result<&str, StoreError> {
    opt_text(value)?.ok_or_else(|| protocol("a string", value))
}

fn decimal(s: &str) -> Result<U256, StoreError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(StoreError::Protocol(format!("expected a decimal, got {s:?}")));
    }
    U256::from_str_radix(s, 10).map_err(|_| StoreError::Protocol(format!("decimal out of range: {s:?}")))
}

fn secs(s: &str) -> Result<u64, StoreError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(StoreError::Protocol(format!("expected a time in seconds, got {s:?}")));
    }
    s.parse()
        .map_err(|_| StoreError::Protocol(format!("time out of range: {s:?}")))
}

/// The field–value pairs of a hash reply (an array of alternating fields and values, or a map).
fn pairs(value: Value) -> Result<Vec<(String, String)>, StoreError> {
    let items: Vec<(Value, Value)> = match value {
        Value::Array(values) if values.len() % 2 == 0 => {
            let mut it = values.into_iter();
            std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect()
        }
        Value::Map(items) => items,
        other => return Err(protocol("a hash", &other)),
    };
    items
        .iter()
        .map(|(k, v)| Ok((text(k)?.to_owned(), text(v)?.to_owned())))
        .collect()
}

/// The counter keys of a reserved op record, in charge order; `None` when there is no record, it
/// is committed, or it is not `attempt`'s to refund.
fn reserved_keys(record: Value, attempt: u64) -> Result<Option<Vec<String>>, StoreError> {
    let mut fields: std::collections::HashMap<String, String> = pairs(record)?.into_iter().collect();
    if fields.get("s").map(String::as_str) != Some("r") {
        return Ok(None);
    }
    if fields.get("t").map(String::as_str) != Some(attempt.to_string().as_str()) {
        return Ok(None);
    }
    let n: usize = fields
        .get("n")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| StoreError::Protocol("op record without a charge count".into()))?;
    (1..=n)
        .map(|i| {
            fields
                .remove(&format!("k{i}"))
                .ok_or_else(|| StoreError::Protocol(format!("op record without k{i}")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The first element of a script's reply: its status word.
fn status(reply: &Value) -> Result<&str, StoreError> {
    match reply {
        Value::Array(values) if !values.is_empty() => text(&values[0]),
        other => Err(protocol("a script reply", other)),
    }
}

fn bad(reply: &Value) -> StoreError {
    let reason = match reply {
        Value::Array(values) => values
            .get(1)
            .and_then(|v| opt_text(v).ok().flatten())
            .unwrap_or("no reason"),
        _ => "no reason",
    };
    StoreError::Protocol(format!("the store's data is malformed: {reason}"))
}

fn index(value: &Value, len: usize) -> Result<usize, StoreError> {
    usize::try_from(int(value)?)
        .ok()
        .filter(|i| *i < len)
        .ok_or_else(|| protocol(&format!("an index below {len}"), value))
}

fn parse_reserved(reply: Value, charges: usize, guards: usize) -> Result<Reserved, StoreError> {
    let word = status(&reply)?.to_owned();
    let Value::Array(values) = &reply else {
        return Err(protocol("a script reply", &reply));
    };
    let field = |i: usize| {
        values
            .get(i)
            .ok_or_else(|| protocol(&format!("{word} with {} fields", i + 1), &reply))
    };
    match word.as_str() {
        "charged" | "adopted" => Ok(Reserved::Charged),
        "dup" => Ok(Reserved::AlreadyCharged),
        "revoked" => Ok(Reserved::Revoked {
            index: index(field(1)?, guards)?,
        }),
        "exceeded" => {
            let resets = text(field(3)?)?;
            Ok(Reserved::Exceeded {
                index: index(field(1)?, charges)?,
                used: decimal(text(field(2)?)?)?,
                resets_at: if resets.is_empty() { None } else { Some(secs(resets)?) },
            })
        }
        "notyet" => Ok(Reserved::NotYetAvailable {
            index: index(field(1)?, charges)?,
            available_at: secs(text(field(2)?)?)?,
        }),
        "bad" => Err(bad(&reply)),
        other => Err(StoreError::Protocol(format!("reserve answered {other:?}"))),
    }
}
