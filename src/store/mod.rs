//! Usage counters, per-operation reservations, revocations and the permission registry, behind
//! one interface with two backends that behave identically:
//!
//! - [`memory::MemoryStore`]: one process, no setup (the embedded default);
//! - [`redis::RedisStore`]: shared by any number of replicas, on one Redis server, a Redis Cluster or
//!   a Sentinel-managed primary ([`target`]); a reservation of an account's own counters is one Lua
//!   script, one round trip.
//!
//! # Counters
//!
//! A counter is named by the policy layer (`counter`, an opaque string) and has a [`Window`]; the
//! pair is the counter's identity, so the same name used with another window (or the same window
//! kind with other parameters) is another counter, starting at 0. The store appends the window's
//! id where the window is fixed, so an old window's key simply expires. Amounts are unsigned
//! 256-bit integers (wei, token units, op counts), exact at every size; a sum that would pass
//! `U256::MAX` exceeds every limit.
//!
//! # Reservation
//!
//! [`Store::reserve`] takes every [`Charge`] an operation makes and, in one atomic step: refuses if a
//! guard is revoked; does nothing if the operation's hash was already charged; otherwise checks every
//! counter (`used + amount ≤ limit`, and a schedule's next slot is due) and increments all of them,
//! or none. The reservation is remembered under the op hash. After relaying, [`Store::commit`] keeps
//! it (upstream accepted) and [`Store::refund`] gives it back (upstream refused or unreachable).
//!
//! # Where counters live
//!
//! Every counter has a [`Scope`]: most belong to the op's account ([`Scope::Account`]: session
//! policies, per-sender and per-session operator budgets), the rest are shared by every account
//! ([`Scope::Shared`]: `counter_scope = "policy"` budgets, cross-chain replay markers). A counter's
//! identity is its scope (with the account), its name and its window. On a Redis Cluster an
//! account's counters and its op records share one hash slot, so different accounts spread over the
//! shards; shared counters have a slot of their own, and an op charging both is reserved in two
//! steps, the first given back when the second refuses. Both backends answer the same either way.
//!
//! # Who may refund
//!
//! A reservation is made by one *attempt* ([`Reservation::attempt`], random per send): only that
//! attempt's [`Ticket`] can refund it. A later send of the same hash that finds it
//! ([`Reserved::AlreadyCharged`]) relies on it, so from then on nobody can refund it: a send that
//! timed out and is taken back in the background can never undo a charge another send relayed on.
//!
//! A reservation checks the account's charges first, then the shared ones (each in the order
//! given): a refusal names the first charge that fails in that order.
//!
//! Several charges of one reservation may name the same counter (two calls to one target in a
//! batch): each is checked against the counter as the earlier charges of the same reservation
//! left it.
//!
//! A reservation is remembered for the dedupe TTL ([`DEFAULT_DEDUPE_TTL`] unless configured),
//! measured on the caller's clock: a reservation made at `t` makes every later [`Store::reserve`]
//! of that hash with `now < t + ttl` answer [`Reserved::AlreadyCharged`]. A committed record stays
//! until then; a refunded one is forgotten at once.
//!
//! Time is always the caller's `now` (Unix seconds), never the store's clock, so both backends and
//! every replica agree and tests can pin or advance the clock. Stored keys also expire by
//! themselves (Redis TTLs, pruning in memory), some time after they stop mattering: a fixed or
//! anchored window's counter an hour after its window ends, an op record after the dedupe TTL.

mod layout;
pub mod memory;
pub mod redis;
pub mod target;

use std::time::Duration;

use alloy_primitives::{Address, B256, U256};
use serde::Serialize;

/// How long an op hash is remembered when no dedupe TTL is configured: 24 hours.
pub const DEFAULT_DEDUPE_TTL: Duration = Duration::from_secs(24 * 3600);

/// How a counter resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Window {
    /// Never resets.
    Lifetime,
    /// Fixed windows aligned to the Unix epoch: the window holding `now` is
    /// `[now - now % period, now - now % period + period)`; its id is `now / period`.
    Fixed {
        /// Window length in seconds (> 0; 0 counts as 1).
        period: u64,
    },
    /// A window opened by the first charge made after the previous window ended:
    /// `[first, first + period)` (the semantics of Kernel's RateLimitPolicy with reset).
    Anchored {
        /// Window length in seconds (> 0; 0 counts as 1).
        period: u64,
    },
    /// A lifetime count with a schedule: the k-th unit (0-based, `k = used`) becomes available at
    /// `start_at + k · interval` (the semantics of Kernel's RateLimitPolicy). Charges on a
    /// schedule are always of amount 1 (another amount counts as that many units, of which only
    /// the first must be due).
    Schedule {
        /// When the first unit is available (Unix seconds).
        start_at: u64,
        /// Seconds between units.
        interval: u64,
    },
}

impl Window {
    /// When the window holding `now` ends, for windows that end; `anchored_end` is the stored end of
    /// an anchored window (`None` when none is open). Saturates at `u64::MAX`.
    pub fn resets_at(&self, now: u64, anchored_end: Option<u64>) -> Option<u64> {
        match *self {
            Window::Lifetime | Window::Schedule { .. } => None,
            Window::Fixed { period } => Some(layout::fixed_window(period, now).1),
            Window::Anchored { .. } => anchored_end.filter(|end| *end > now),
        }
    }
}

/// Whose counter it is: the op's account's, or every account's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The op's account's (the reservation's `account`): stored with that account's state.
    Account,
    /// Shared by every account.
    Shared,
}

/// One counter increment an operation makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// Counter name, chosen by the policy layer (ASCII, no whitespace).
    pub counter: String,
    /// Whose counter it is.
    pub scope: Scope,
    /// How much this operation uses.
    pub amount: U256,
    /// The most the counter may reach within its window.
    pub limit: U256,
    /// How the counter resets.
    pub window: Window,
}

/// Everything [`Store::reserve`] needs for one operation.
#[derive(Debug, Clone, Copy)]
pub struct Reservation<'a> {
    /// The userOpHash: an operation is charged at most once.
    pub op: B256,
    /// The op's account (its `sender`): where its record and its [`Scope::Account`] counters live.
    pub account: Address,
    /// This send's own id (non-zero, random): the [`Ticket`] that may refund what it reserves.
    pub attempt: u64,
    /// The caller's clock (Unix seconds).
    pub now: u64,
    /// Counter increments, all or none.
    pub charges: &'a [Charge],
    /// Revocation subjects (e.g. `sender:0x…`, `signer:0x…`): any of them revoked → refused.
    pub guards: &'a [String],
}

impl Reservation<'_> {
    /// What commits or refunds this reservation.
    pub fn ticket(&self) -> Ticket {
        Ticket {
            op: self.op,
            account: self.account,
            attempt: self.attempt,
            shared: self.charges.iter().any(|c| c.scope == Scope::Shared),
        }
    }
}

/// What [`Store::commit`] and [`Store::refund`] need of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// The userOpHash.
    pub op: B256,
    /// The op's account.
    pub account: Address,
    /// The attempt that reserved.
    pub attempt: u64,
    /// Whether it charged shared counters.
    pub shared: bool,
}

/// A counter to read: its scope, name and window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterRef {
    /// Whose counter it is.
    pub scope: Scope,
    /// Its name.
    pub counter: String,
    /// Its window.
    pub window: Window,
}

/// A fresh, non-zero attempt id for [`Reservation::attempt`] (random per process, then counted, so
/// two sends never share one).
pub fn new_attempt() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static SEED: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    });
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(seed);
    h.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    h.finish().max(1)
}

/// The order a reservation checks its charges in: the account's, then the shared ones, each in
/// the order given. A refusal names the first that fails in this order.
pub(crate) fn check_order(charges: &[Charge]) -> impl Iterator<Item = usize> + '_ {
    let of = move |scope: Scope| (0..charges.len()).filter(move |i| charges[*i].scope == scope);
    of(Scope::Account).chain(of(Scope::Shared))
}

/// What a reservation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// Every charge was made.
    Charged,
    /// This op hash is already reserved or committed: nothing was charged again, and the earlier
    /// reservation can no longer be refunded (this send relies on it).
    AlreadyCharged,
    /// `charges[index]` would pass its limit; nothing was charged.
    Exceeded {
        /// Index into the charges.
        index: usize,
        /// The counter's current value in its window, as stored (without earlier charges of the
        /// same reservation to the same counter).
        used: U256,
        /// When the counter's window resets, if it does.
        resets_at: Option<u64>,
    },
    /// `charges[index]` is a schedule whose next unit is not due yet; nothing was charged.
    NotYetAvailable {
        /// Index into the charges.
        index: usize,
        /// When the next unit becomes available (Unix seconds).
        available_at: u64,
    },
    /// `guards[index]` is revoked; nothing was charged.
    Revoked {
        /// Index into the guards.
        index: usize,
    },
}

/// A counter's state, for reporting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Current value within the window holding `now` (0 when the window has not been used).
    pub used: U256,
    /// When that window ends, if it does.
    pub resets_at: Option<u64>,
    /// For a schedule: when its next unit is available.
    pub available_at: Option<u64>,
}

/// A store failure. Callers apply their `on_error` rule; nothing was charged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend did not answer in time.
    #[error("store timed out after {0} ms")]
    Timeout(u64),
    /// The backend could not be reached or answered with an error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend answered something this version does not understand.
    #[error("store answered unexpectedly: {0}")]
    Protocol(String),
}

/// The configured backend.
#[derive(Debug)]
pub enum Store {
    /// In this process.
    Memory(memory::MemoryStore),
    /// In Redis, shared by replicas.
    Redis(redis::RedisStore),
}

impl Store {
    /// `memory`, or the Redis topology (`single`, `cluster`, `sentinel`).
    pub fn topology(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Redis(r) => r.topology().as_str(),
        }
    }

    /// Connections dropped after a failure and made again (0 for memory).
    pub fn reconnects(&self) -> u64 {
        match self {
            Store::Memory(_) => 0,
            Store::Redis(r) => r.reconnects(),
        }
    }

    /// How many entries the memory backend holds (`None` for Redis, whose memory is its own).
    pub fn entries(&self) -> Option<usize> {
        match self {
            Store::Memory(m) => Some(m.entries()),
            Store::Redis(_) => None,
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Memory($s) => $e,
            Store::Redis($s) => $e,
        }
    };
}

impl Store {
    /// Name of the backend, for logs and metrics.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        }
    }

    /// Checks and charges every counter of one operation, atomically (see the module docs).
    pub async fn reserve(&self, r: &Reservation<'_>) -> Result<Reserved, StoreError> {
        dispatch!(self, s => s.reserve(r).await)
    }

    /// Keeps the reservation of `t.op` (the upstream accepted it). Unknown ops are ignored.
    pub async fn commit(&self, t: &Ticket) -> Result<(), StoreError> {
        dispatch!(self, s => s.commit(t).await)
    }

    /// Gives back a reservation that was not committed, made by `t`'s attempt and relied on by no
    /// other send, and forgets the op hash so a later send is charged again. Returns whether
    /// anything was refunded.
    pub async fn refund(&self, t: &Ticket) -> Result<bool, StoreError> {
        dispatch!(self, s => s.refund(t).await)
    }

    /// Reads counters (those of [`Scope::Account`] are `account`'s) without changing them. For a
    /// schedule, `available_at` is when its next unit is (or was) available; a limit is not known
    /// here.
    pub async fn usage(&self, account: Address, counters: &[CounterRef], now: u64) -> Result<Vec<Usage>, StoreError> {
        dispatch!(self, s => s.usage(account, counters, now).await)
    }

    /// Admits one request under every limit in `limits` (`(name, rate per second, burst)`), all
    /// or none, in one round trip (GCRA: `burst` at once, then `rate` per second). `None`: admitted
    /// and charged; `Some(wait)`: refused, admitted again after `wait`.
    pub async fn rate_limit(
        &self,
        limits: &[(&str, u32, u32)],
        now: std::time::SystemTime,
    ) -> Result<Option<Duration>, StoreError> {
        let now_us = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let gcra: Vec<(&str, u64, u64)> = limits
            .iter()
            .map(|(k, rate, burst)| {
                let interval = (1_000_000 / u64::from((*rate).max(1))).max(1);
                (*k, interval, interval.saturating_mul(u64::from((*burst).max(1))))
            })
            .collect();
        let wait = dispatch!(self, s => s.rate_limit(&gcra, now_us).await)?;
        Ok((wait > 0).then(|| Duration::from_micros(wait)))
    }

    /// The index of the first revoked guard, if any.
    pub async fn revoked(&self, guards: &[String]) -> Result<Option<usize>, StoreError> {
        dispatch!(self, s => s.revoked(guards).await)
    }

    /// Revokes a subject (effective for every later reservation, on every replica). Revoking a
    /// revoked subject keeps the time of the first revocation.
    pub async fn revoke(&self, guard: &str, now: u64) -> Result<(), StoreError> {
        dispatch!(self, s => s.revoke(guard, now).await)
    }

    /// Lifts a revocation. Returns whether the subject was revoked.
    pub async fn unrevoke(&self, guard: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.unrevoke(guard).await)
    }

    /// Every revoked subject with the time it was revoked, ordered by subject.
    pub async fn list_revoked(&self) -> Result<Vec<(String, u64)>, StoreError> {
        dispatch!(self, s => s.list_revoked().await)
    }

    /// Stores a registry entry (a serialized permission) and bumps the registry version.
    pub async fn put_permission(&self, key: &str, value: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.put_permission(key, value).await)
    }

    /// Reads a registry entry.
    pub async fn get_permission(&self, key: &str) -> Result<Option<String>, StoreError> {
        dispatch!(self, s => s.get_permission(key).await)
    }

    /// Removes a registry entry (bumps the version). Returns whether it existed.
    pub async fn delete_permission(&self, key: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete_permission(key).await)
    }

    /// A number that changes whenever the registry or the revocations change, so replicas can
    /// drop cached entries: it grows by one on every put, delete, revoke and unrevoke (0 before
    /// the first).
    pub async fn version(&self) -> Result<u64, StoreError> {
        dispatch!(self, s => s.version().await)
    }

    /// Whether the backend answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping().await)
    }
}
