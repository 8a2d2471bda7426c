//! The Redis backend, shared by replicas: every replica pointed at the same server and prefix sees
//! the same counters, reservations, revocations and registry.
//!
//! # Key layout
//!
//! Every key begins with the hash tag `{<prefix>}`, so all keys of one store live in one Redis
//! Cluster slot and a script may touch any of them. With the prefix `opgate:`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{opgate:}c:l:<counter>` | string | a lifetime counter: decimal |
//! | `{opgate:}c:f<period>:<id>:<counter>` | string | a fixed window's counter, `id = now / period`: decimal; expires an hour after the window ends |
//! | `{opgate:}c:a<period>:<counter>` | string | an anchored window: `<end>:<used>`; expires an hour after `end` |
//! | `{opgate:}c:s<start_at>+<interval>:<counter>` | string | a schedule's count: decimal |
//! | `{opgate:}op:<0x op hash>` | hash | a reservation: `s` (`r` reserved, `c` committed), `x` (expiry stamp on the callers' clock), `n` (charges), and per charge `k<i>` (counter key), `a<i>` (amount), `e<i>` (anchored window end, else empty); expires after the dedupe TTL |
//! | `{opgate:}revoked` | hash | subject → Unix time of its revocation |
//! | `{opgate:}perm:<key>` | string | a registry entry |
//! | `{opgate:}version` | string | the registry version, `INCR`ed on every put, delete, revoke and unrevoke |
//!
//! Numbers are decimal strings: the scripts add, subtract and compare them exactly (Lua's numbers
//! are doubles). Expiries are relative (`EX`, `EXPIRE`: the window end minus the caller's `now`,
//! plus the grace), never absolute, since time is the caller's clock and not the server's.
//!
//! # Commands
//!
//! [`RedisStore::reserve`] is one script (`EVALSHA`, loaded on first use), one round trip; its
//! keys (the counter keys with their window ids, computed here from `now`) are all passed in
//! `KEYS`. [`RedisStore::refund`] reads the op record, then runs a script over the keys it names,
//! which checks the record is still the one read (two round trips, off the hot path).
//! [`RedisStore::usage`] is one `MGET`. Registry and revocation writes bump the version in the same
//! `MULTI`.
//!
//! # Failures
//!
//! Every call is bounded by the configured timeout ([`StoreError::Timeout`]); a connection that
//! cannot be made or breaks is [`StoreError::Unavailable`], an unexpected answer
//! [`StoreError::Protocol`]. The connection is a [`ConnectionManager`]: established lazily, on the
//! first call, and re-established after it breaks, on a later call. A store whose server is not
//! up yet therefore starts anyway (its calls fail until the server answers) and recovers by itself.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, ErrorKind, RedisError, RedisResult, Script, Value};
use alloy_primitives::{B256, U256};

use super::layout::{self, counter_key};
use super::{Reservation, Reserved, StoreError, Usage, Window};

/// How often a refund reads the op record again when it changed between the read and the script.
const REFUND_ATTEMPTS: usize = 4;

/// Counters, reservations, revocations and the registry in Redis.
pub struct RedisStore {
    conn: ConnectionManager,
    /// `{<prefix>}`: the start of every key.
    tag: String,
    timeout: Duration,
    dedupe_ttl: u64,
    reserve: Script,
    refund: Script,
    commit: Script,
    rate: Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("tag", &self.tag)
            .field("timeout", &self.timeout)
            .field("dedupe_ttl", &self.dedupe_ttl)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on the server at `url` (`redis://host:port/db`), its keys beginning with
    /// `{<prefix>}`, every call bounded by `timeout`, op hashes remembered for `dedupe_ttl` (whole
    /// seconds, at least 1).
    ///
    /// Fails only on a malformed URL or prefix (which must be non-empty and hold no `{` or `}`).
    /// The server need not be up: this tries one `PING` (bounded by `timeout`) and logs a warning if
    /// it fails; the connection is then made by a later call, and every call until then fails
    /// with [`StoreError::Unavailable`] or [`StoreError::Timeout`].
    pub async fn connect(url: &str, prefix: &str, timeout: Duration, dedupe_ttl: Duration) -> Result<Self, StoreError> {
        if prefix.is_empty() || prefix.contains(['{', '}']) {
            return Err(StoreError::Unavailable(format!(
                "invalid key prefix {prefix:?}: it must be non-empty and hold no braces"
            )));
        }
        let client = Client::open(url).map_err(|e| StoreError::Unavailable(format!("invalid Redis URL: {e}")))?;
        // Few quick retries inside one attempt: the caller's timeout bounds every call, and the next
        // call starts a new attempt.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError::Unavailable(format!("Redis connection setup: {e}")))?;
        let store = Self {
            conn,
            tag: format!("{{{prefix}}}"),
            timeout,
            dedupe_ttl: dedupe_ttl.as_secs().clamp(1, layout::MAX_TTL_SECS),
            reserve: Script::new(concat!(include_str!("decimal.lua"), include_str!("reserve.lua"))),
            refund: Script::new(concat!(include_str!("decimal.lua"), include_str!("refund.lua"))),
            commit: Script::new(include_str!("commit.lua")),
            rate: Script::new(include_str!("rate.lua")),
        };
        if let Err(e) = store.ping().await {
            tracing::warn!(error = %e, "Redis store not reachable yet; connecting on later calls");
        }
        Ok(store)
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.tag)
    }

    fn op_key(&self, op: B256) -> String {
        format!("{}op:{op}", self.tag)
    }

    /// Runs `f` on a handle of the shared connection, bounded by the timeout.
    async fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, f(self.conn.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.error(e)),
            Err(_) => Err(StoreError::Timeout(millis(self.timeout))),
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

    /// See [`Store::reserve`](super::Store::reserve).
    pub async fn reserve(&self, r: &Reservation<'_>) -> Result<Reserved, StoreError> {
        let now = r.now;
        let mut inv = self.reserve.prepare_invoke();
        inv.key(self.op_key(r.op)).key(self.key("revoked"));
        inv.arg(now)
            .arg(now.saturating_add(self.dedupe_ttl))
            .arg(self.dedupe_ttl)
            .arg(r.guards.len());
        for guard in r.guards {
            inv.arg(guard.as_str());
        }
        for charge in r.charges {
            inv.key(self.key(&counter_key(&charge.counter, &charge.window, now)));
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
            inv.arg(kind)
                .arg(charge.amount.to_string())
                .arg(charge.limit.to_string())
                .arg(a)
                .arg(b);
        }
        let reply = self
            .run(|mut conn| async move { inv.invoke_async::<Value>(&mut conn).await })
            .await?;
        parse_reserved(reply, r.charges.len(), r.guards.len())
    }

    /// See [`Store::commit`](super::Store::commit).
    pub async fn commit(&self, op: B256) -> Result<(), StoreError> {
        let mut inv = self.commit.prepare_invoke();
        inv.key(self.op_key(op));
        self.run(|mut conn| async move { inv.invoke_async::<Value>(&mut conn).await })
            .await?;
        Ok(())
    }

    /// See [`Store::rate_limit`](super::Store::rate_limit): `(key, interval, tolerance)` in
    /// microseconds; answers the wait in microseconds (0: admitted).
    pub async fn rate_limit(&self, limits: &[(&str, u64, u64)], now_us: u64) -> Result<u64, StoreError> {
        if limits.is_empty() {
            return Ok(0);
        }
        let mut inv = self.rate.prepare_invoke();
        inv.arg(now_us);
        for (k, interval, tolerance) in limits {
            inv.key(self.key(&format!("rl:{k}")));
            inv.arg(*interval).arg(*tolerance);
        }
        let reply = self
            .run(|mut conn| async move { inv.invoke_async::<Value>(&mut conn).await })
            .await?;
        match reply {
            Value::Int(n) => Ok(u64::try_from(n).unwrap_or(0)),
            other => Err(StoreError::Protocol(format!("the rate script answered {other:?}"))),
        }
    }

    /// See [`Store::refund`](super::Store::refund).
    pub async fn refund(&self, op: B256) -> Result<bool, StoreError> {
        let op_key = self.op_key(op);
        for _ in 0..REFUND_ATTEMPTS {
            let record = self.query(cmd("HGETALL").arg(&op_key).clone()).await?;
            let Some(keys) = reserved_keys(record)? else {
                return Ok(false);
            };
            let mut inv = self.refund.prepare_invoke();
            inv.key(&op_key);
            for key in &keys {
                inv.key(key.as_str());
            }
            let reply = self
                .run(|mut conn| async move { inv.invoke_async::<Value>(&mut conn).await })
                .await?;
            match status(&reply)? {
                "refunded" => return Ok(true),
                "none" => return Ok(false),
                "changed" => continue,
                "bad" => return Err(bad(&reply)),
                other => return Err(StoreError::Protocol(format!("refund answered {other:?}"))),
            }
        }
        Err(StoreError::Protocol(format!(
            "op record of {op} kept changing during a refund"
        )))
    }

    /// See [`Store::usage`](super::Store::usage).
    pub async fn usage(&self, counters: &[(String, Window)], now: u64) -> Result<Vec<Usage>, StoreError> {
        if counters.is_empty() {
            return Ok(Vec::new());
        }
        let mut mget = cmd("MGET");
        for (name, window) in counters {
            mget.arg(self.key(&counter_key(name, window, now)));
        }
        let values = array(self.query(mget).await?, counters.len())?;
        counters
            .iter()
            .zip(values)
            .map(|((_, window), value)| {
                let stored = opt_text(&value)?;
                let (used, end) = match (window, stored) {
                    (_, None) => (U256::ZERO, None),
                    (Window::Anchored { .. }, Some(s)) => {
                        let (end, used) = s
                            .split_once(':')
                            .ok_or_else(|| StoreError::Protocol(format!("malformed anchored counter {s:?}")))?;
                        (decimal(used)?, Some(secs(end)?))
                    }
                    (_, Some(s)) => (decimal(s)?, None),
                };
                Ok(layout::usage_of(window, now, used, end))
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
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self.query(cmd("PING")).await? {
            Value::SimpleString(s) if s == "PONG" => Ok(()),
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

/// The counter keys of a reserved op record, in charge order; `None` when there is no record or it
/// is committed.
fn reserved_keys(record: Value) -> Result<Option<Vec<String>>, StoreError> {
    let mut fields: std::collections::HashMap<String, String> = pairs(record)?.into_iter().collect();
    if fields.get("s").map(String::as_str) != Some("r") {
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
        "charged" => Ok(Reserved::Charged),
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
