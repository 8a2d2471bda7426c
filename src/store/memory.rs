//! The in-process backend: the same semantics as [`RedisStore`](super::redis::RedisStore), for a
//! single replica.
//!
//! Everything sits behind one [`std::sync::Mutex`], held only for the few map operations of a call
//! (never across an `.await`), so every call is atomic.
//!
//! # Expiry and memory
//!
//! There is no clock here but the callers' `now`: the store remembers the latest `now` it was
//! given, and entries are dropped once that clock passes their expiry — a fixed or anchored
//! window's counter an hour after its window ends, an op record at the end of its dedupe TTL.
//! Pruning is opportunistic: at most once per minute of that clock, on a reservation or a read of
//! usage, in one pass over the maps. Memory therefore grows with the number of distinct counters
//! and ops seen within the windows and the dedupe TTL; lifetime and schedule counters, revocations
//! and registry entries are kept until removed.
//!
//! # The entry cap
//!
//! `[store] max_entries` bounds counters, op records, revocations and registry entries together.
//! When a reservation or a registry write would pass it, the store first prunes every expired
//! entry, then evicts committed op records, oldest first: they only recognise a resend of an op
//! already charged, so evicting one can make a resend be charged again — never a charge
//! forgotten. Counters are never evicted before their window ends, and uncommitted op records
//! (whose charges a refund needs) are kept. When that is not enough the store is full: the
//! reservation or write is refused as [`StoreError::Unavailable`] (so `on_error` decides, and it
//! is counted). Revocations are always recorded, even past the cap.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use alloy_primitives::{Address, B256, U256};

use super::layout::{self, counter_key};
use super::{CounterRef, Reservation, Reserved, Scope, StoreError, Ticket, Usage, Window, DEFAULT_DEDUPE_TTL};

/// How far the callers' clock moves between two prunings.
const PRUNE_EVERY_SECS: u64 = 60;

/// Counters, reservations, revocations and the registry of one process.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// Request limits' theoretical arrival times (µs), apart from the entry cap: they expire on
    /// their own and are pruned when the map grows.
    rates: Mutex<HashMap<String, u64>>,
    dedupe_ttl: u64,
    max_entries: usize,
}

/// Past this many request-limit entries, the expired ones are pruned.
const RATE_ENTRIES_PRUNE_AT: usize = 100_000;

/// The default `[store] max_entries`.
pub const DEFAULT_MAX_ENTRIES: usize = 1_000_000;

#[derive(Debug, Default)]
struct Inner {
    counters: HashMap<String, Counter>,
    ops: HashMap<B256, OpRecord>,
    revoked: BTreeMap<String, u64>,
    permissions: HashMap<String, String>,
    version: u64,
    /// The latest `now` seen.
    clock: u64,
    /// When (on `clock`) to prune next.
    next_prune: u64,
}

#[derive(Debug)]
struct Counter {
    used: U256,
    /// An anchored window's end.
    window_end: Option<u64>,
    /// When the entry may be dropped; `None`: never.
    expires_at: Option<u64>,
}

#[derive(Debug)]
struct OpRecord {
    committed: bool,
    /// The attempt that may refund it; 0 once another send relied on it.
    attempt: u64,
    expires_at: u64,
    charges: Vec<Charged>,
}

/// One charge as made: the counter key incremented, by how much, and for an anchored window the
/// end of the window it went into.
#[derive(Debug)]
struct Charged {
    key: String,
    amount: U256,
    window_end: Option<u64>,
    /// This charge opened its anchored window.
    opened: bool,
}

/// A counter as one reservation sees it while checking its charges.
struct Pending {
    key: String,
    /// Value in the window holding `now`, as stored.
    stored: U256,
    /// Value after this reservation's charges so far.
    projected: U256,
    /// Anchored: the end of the window charged into.
    window_end: Option<u64>,
    /// Anchored: the window is opened by this reservation.
    opens: bool,
    expires_at: Option<u64>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(DEFAULT_DEDUPE_TTL)
    }
}

impl MemoryStore {
    /// An empty store remembering op hashes for `dedupe_ttl` (whole seconds, at least 1) of the
    /// callers' clock.
    pub fn new(dedupe_ttl: Duration) -> Self {
        Self::bounded(dedupe_ttl, DEFAULT_MAX_ENTRIES)
    }

    /// [`MemoryStore::new`], holding at most `max_entries` entries (see the module docs).
    pub fn bounded(dedupe_ttl: Duration, max_entries: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            rates: Mutex::new(HashMap::new()),
            dedupe_ttl: dedupe_ttl.as_secs().clamp(1, layout::MAX_TTL_SECS),
            max_entries: max_entries.max(1),
        }
    }

    /// See [`Store::rate_limit`](super::Store::rate_limit): GCRA on `(key, interval,
    /// tolerance)` in microseconds, all or none.
    pub async fn rate_limit(&self, limits: &[(&str, u64, u64)], now_us: u64) -> Result<u64, StoreError> {
        let mut rates = self.rates.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if rates.len() >= RATE_ENTRIES_PRUNE_AT {
            rates.retain(|_, tat| *tat > now_us);
        }
        let mut wait = 0u64;
        let mut next = Vec::with_capacity(limits.len());
        for (k, interval, tolerance) in limits {
            let tat = rates.get(*k).copied().unwrap_or(0).max(now_us);
            let new_tat = tat.saturating_add(*interval);
            let allow_at = new_tat.saturating_sub(*tolerance);
            if now_us < allow_at {
                wait = wait.max(allow_at - now_us);
            }
            next.push(new_tat);
        }
        if wait == 0 {
            for ((k, ..), tat) in limits.iter().zip(next) {
                match rates.get_mut(*k) {
                    Some(slot) => *slot = tat,
                    None => {
                        rates.insert((*k).to_owned(), tat);
                    }
                }
            }
        }
        Ok(wait)
    }

    /// How many entries the store holds (counters, op records, revocations, registry).
    pub fn entries(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation below completes or leaves the maps consistent, so a panic elsewhere while
        // holding the lock leaves nothing to repair.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// See [`Store::reserve`](super::Store::reserve).
    pub async fn reserve(&self, r: &Reservation<'_>) -> Result<Reserved, StoreError> {
        let now = r.now;
        let mut g = self.lock();
        g.observe(now);

        if let Some(index) = r.guards.iter().position(|guard| g.revoked.contains_key(guard)) {
            return Ok(Reserved::Revoked { index });
        }
        if let Some(op) = g.ops.get_mut(&r.op).filter(|op| now < op.expires_at) {
            // This send relies on the earlier reservation: nobody may take it back any more.
            op.attempt = 0;
            return Ok(Reserved::AlreadyCharged);
        }

        let mut pending: Vec<Pending> = Vec::new();
        let mut charged = Vec::with_capacity(r.charges.len());
        for index in super::check_order(r.charges) {
            let charge = &r.charges[index];
            let key = memory_key(charge.scope, r.account, &charge.counter, &charge.window, now);
            let at = match pending.iter().position(|p| p.key == key) {
                Some(at) => at,
                None => {
                    pending.push(g.pending(key, &charge.window, now));
                    pending.len() - 1
                }
            };
            let p = &mut pending[at];
            let sum = match p.projected.checked_add(charge.amount) {
                Some(sum) if sum <= charge.limit => sum,
                _ => {
                    let resets_at = match charge.window {
                        Window::Fixed { period } => Some(layout::fixed_window(period, now).1),
                        Window::Anchored { .. } if !p.opens => p.window_end,
                        _ => None,
                    };
                    return Ok(Reserved::Exceeded {
                        index,
                        used: p.stored,
                        resets_at,
                    });
                }
            };
            if let Window::Schedule { start_at, interval } = charge.window {
                let due = layout::schedule_due(start_at, interval, p.projected);
                if U256::from(now) < due {
                    return Ok(Reserved::NotYetAvailable {
                        index,
                        available_at: layout::clamp_secs(due),
                    });
                }
            }
            p.projected = sum;
            charged.push(Charged {
                key: p.key.clone(),
                amount: charge.amount,
                window_end: p.window_end,
                opened: p.opens,
            });
        }

        let new_entries = 1 + pending.iter().filter(|p| !g.counters.contains_key(&p.key)).count();
        g.make_room(new_entries, self.max_entries)?;
        for p in pending {
            g.counters.insert(
                p.key,
                Counter {
                    used: p.projected,
                    window_end: p.window_end,
                    expires_at: p.expires_at,
                },
            );
        }
        let record = OpRecord {
            committed: false,
            attempt: r.attempt,
            expires_at: now.saturating_add(self.dedupe_ttl),
            charges: charged,
        };
        g.ops.insert(r.op, record);
        Ok(Reserved::Charged)
    }

    /// See [`Store::commit`](super::Store::commit).
    pub async fn commit(&self, t: &Ticket) -> Result<(), StoreError> {
        if let Some(record) = self.lock().ops.get_mut(&t.op) {
            record.committed = true;
        }
        Ok(())
    }

    /// See [`Store::refund`](super::Store::refund).
    pub async fn refund(&self, t: &Ticket) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let record = match g.ops.remove(&t.op) {
            Some(record) if !record.committed && record.attempt != 0 && record.attempt == t.attempt => record,
            Some(kept) => {
                g.ops.insert(t.op, kept);
                return Ok(false);
            }
            None => return Ok(false),
        };
        for charge in record.charges {
            if let Some(counter) = g.counters.get_mut(&charge.key) {
                // An anchored window is refunded only if it is still the one charged into; one this
                // op opened, with nothing else in it, is closed again.
                if charge.window_end.is_none() || counter.window_end == charge.window_end {
                    counter.used = counter.used.saturating_sub(charge.amount);
                    if charge.opened && counter.used.is_zero() {
                        g.counters.remove(&charge.key);
                    }
                }
            }
        }
        Ok(true)
    }

    /// See [`Store::usage`](super::Store::usage).
    pub async fn usage(&self, account: Address, counters: &[CounterRef], now: u64) -> Result<Vec<Usage>, StoreError> {
        let mut g = self.lock();
        g.observe(now);
        Ok(counters
            .iter()
            .map(|c| {
                let stored = g
                    .counters
                    .get(&memory_key(c.scope, account, &c.counter, &c.window, now));
                let used = stored.map_or(U256::ZERO, |c| c.used);
                layout::usage_of(&c.window, now, used, stored.and_then(|c| c.window_end))
            })
            .collect())
    }

    /// See [`Store::revoked`](super::Store::revoked).
    pub async fn revoked(&self, guards: &[String]) -> Result<Option<usize>, StoreError> {
        let g = self.lock();
        Ok(guards.iter().position(|guard| g.revoked.contains_key(guard)))
    }

    /// See [`Store::revoke`](super::Store::revoke).
    pub async fn revoke(&self, guard: &str, now: u64) -> Result<(), StoreError> {
        let mut g = self.lock();
        g.revoked.entry(guard.to_owned()).or_insert(now);
        g.bump();
        Ok(())
    }

    /// See [`Store::unrevoke`](super::Store::unrevoke).
    pub async fn unrevoke(&self, guard: &str) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let was = g.revoked.remove(guard).is_some();
        g.bump();
        Ok(was)
    }

    /// See [`Store::list_revoked`](super::Store::list_revoked).
    pub async fn list_revoked(&self) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(self
            .lock()
            .revoked
            .iter()
            .map(|(guard, at)| (guard.clone(), *at))
            .collect())
    }

    /// See [`Store::put_permission`](super::Store::put_permission).
    pub async fn put_permission(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let mut g = self.lock();
        if !g.permissions.contains_key(key) {
            g.make_room(1, self.max_entries)?;
        }
        g.permissions.insert(key.to_owned(), value.to_owned());
        g.bump();
        Ok(())
    }

    /// See [`Store::get_permission`](super::Store::get_permission).
    pub async fn get_permission(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock().permissions.get(key).cloned())
    }

    /// See [`Store::delete_permission`](super::Store::delete_permission).
    pub async fn delete_permission(&self, key: &str) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let existed = g.permissions.remove(key).is_some();
        g.bump();
        Ok(existed)
    }

    /// See [`Store::version`](super::Store::version).
    pub async fn version(&self) -> Result<u64, StoreError> {
        Ok(self.lock().version)
    }

    /// Always answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Inner {
    fn len(&self) -> usize {
        self.counters.len() + self.ops.len() + self.revoked.len() + self.permissions.len()
    }

    /// Makes room for `n` more entries under `cap`: prunes what expired, then evicts committed op
    /// records, oldest first; refuses when that is not enough.
    fn make_room(&mut self, n: usize, cap: usize) -> Result<(), StoreError> {
        if self.len() + n <= cap {
            return Ok(());
        }
        self.prune();
        let over = (self.len() + n).saturating_sub(cap);
        if over > 0 {
            let mut committed: Vec<(u64, B256)> = self
                .ops
                .iter()
                .filter(|(_, op)| op.committed)
                .map(|(hash, op)| (op.expires_at, *hash))
                .collect();
            if committed.len() > over {
                committed.select_nth_unstable(over - 1);
                committed.truncate(over);
            }
            for (_, hash) in committed {
                self.ops.remove(&hash);
            }
        }
        if self.len() + n > cap {
            return Err(StoreError::Unavailable(format!(
                "the memory store is full ({} entries, [store] max_entries = {cap}); nothing more can be \
                 charged until counters' windows end or ops are committed",
                self.len()
            )));
        }
        Ok(())
    }

    fn bump(&mut self) {
        self.version = self.version.wrapping_add(1);
    }

    /// Advances the clock to `now` and prunes expired entries when it is due.
    fn observe(&mut self, now: u64) {
        self.clock = self.clock.max(now);
        if self.clock < self.next_prune {
            return;
        }
        self.prune();
    }

    /// Drops every entry expired on the store's clock.
    fn prune(&mut self) {
        let clock = self.clock;
        self.counters.retain(|_, c| c.expires_at.is_none_or(|at| clock < at));
        self.ops.retain(|_, op| clock < op.expires_at);
        self.next_prune = clock.saturating_add(PRUNE_EVERY_SECS);
    }

    /// How a reservation at `now` finds the counter under `key`.
    fn pending(&self, key: String, window: &Window, now: u64) -> Pending {
        let stored = self.counters.get(&key);
        let expiring_at = |end: u64| layout::ttl_after(now, end).map(|ttl| now.saturating_add(ttl));
        match *window {
            Window::Anchored { period } => match stored {
                Some(c) if c.window_end.is_some_and(|end| now < end) => Pending {
                    key,
                    stored: c.used,
                    projected: c.used,
                    window_end: c.window_end,
                    opens: false,
                    expires_at: c.expires_at,
                },
                _ => {
                    let end = now.saturating_add(layout::period(period));
                    Pending {
                        key,
                        stored: U256::ZERO,
                        projected: U256::ZERO,
                        window_end: Some(end),
                        opens: true,
                        expires_at: expiring_at(end),
                    }
                }
            },
            Window::Fixed { period } => {
                let used = stored.map_or(U256::ZERO, |c| c.used);
                let end = layout::fixed_window(period, now).1;
                Pending {
                    key,
                    stored: used,
                    projected: used,
                    window_end: None,
                    opens: false,
                    expires_at: expiring_at(end),
                }
            }
            Window::Lifetime | Window::Schedule { .. } => {
                let used = stored.map_or(U256::ZERO, |c| c.used);
                Pending {
                    key,
                    stored: used,
                    projected: used,
                    window_end: None,
                    opens: false,
                    expires_at: None,
                }
            }
        }
    }
}

/// A counter's key in the maps: its owner (as in Redis) and its windowed key.
fn memory_key(scope: Scope, account: Address, counter: &str, window: &Window, now: u64) -> String {
    format!(
        "{}/{}",
        layout::owner(scope, account),
        counter_key(counter, window, now)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Charge;

    fn charge(counter: &str, window: Window) -> Charge {
        Charge {
            counter: counter.into(),
            scope: Scope::Account,
            amount: U256::from(1),
            limit: U256::from(10),
            window,
        }
    }

    #[tokio::test]
    async fn expired_entries_are_pruned_on_the_callers_clock() {
        let store = MemoryStore::new(Duration::from_secs(600));
        let t = 1_700_000_000;
        let charges = [
            charge("f", Window::Fixed { period: 60 }),
            charge("a", Window::Anchored { period: 60 }),
            charge("l", Window::Lifetime),
            charge(
                "s",
                Window::Schedule {
                    start_at: 0,
                    interval: 1,
                },
            ),
        ];
        let reserve = |op: u64, now: u64| {
            let charges = &charges;
            let store = &store;
            async move {
                let r = Reservation {
                    op: B256::from(U256::from(op)),
                    account: Address::ZERO,
                    attempt: op,
                    now,
                    charges,
                    guards: &[],
                };
                store.reserve(&r).await
            }
        };
        assert_eq!(reserve(1, t).await, Ok(Reserved::Charged));
        assert_eq!(store.lock().counters.len(), 4);
        // Within the grace: nothing goes.
        assert_eq!(reserve(2, t + 120).await, Ok(Reserved::Charged));
        assert_eq!(store.lock().ops.len(), 2);
        // Past the dedupe TTL and an hour past both windows: the first op and the first windows go.
        let later = t + 240 + GRACE;
        assert_eq!(reserve(3, later).await, Ok(Reserved::Charged));
        let g = store.lock();
        assert_eq!(g.ops.len(), 1, "op records past their TTL are dropped");
        let mut keys: Vec<&str> = g.counters.keys().map(String::as_str).collect();
        keys.sort();
        let fixed = format!("c:f60:{}:f", later / 60);
        let a = format!("a:{:#x}/", Address::ZERO);
        let want = ["c:a60:a", fixed.as_str(), "c:l:l", "c:s0+1:s"].map(|k| format!("{a}{k}"));
        assert_eq!(keys, want);
        assert_eq!(g.counters[&format!("{a}c:l:l")].used, U256::from(3));
    }

    const GRACE: u64 = layout::GRACE_SECS;

    /// A long run of unique ops stays under the cap: committed op records make room, lifetime
    /// counters keep every charge, and a store full of what it must keep refuses.
    #[tokio::test]
    async fn the_entry_cap_holds_and_never_forgets_a_charge() {
        let store = MemoryStore::bounded(Duration::from_secs(86_400), 100);
        let t = 1_700_000_000;
        let lifetime = [Charge {
            counter: "budget".into(),
            scope: Scope::Account,
            amount: U256::from(1),
            limit: U256::from(1_000_000),
            window: Window::Lifetime,
        }];
        for op in 0..10_000u64 {
            let r = Reservation {
                op: B256::from(U256::from(op)),
                account: Address::ZERO,
                attempt: op + 1,
                now: t + op,
                charges: &lifetime,
                guards: &[],
            };
            assert_eq!(store.reserve(&r).await, Ok(Reserved::Charged), "op {op}");
            store.commit(&r.ticket()).await.unwrap();
            assert!(store.entries() <= 100, "{} entries after op {op}", store.entries());
        }
        assert_eq!(
            store.lock().counters[&format!("a:{:#x}/c:l:budget", Address::ZERO)].used,
            U256::from(10_000)
        );

        // Uncommitted ops and never-ending counters are kept: the store fills, then refuses.
        let full = MemoryStore::bounded(Duration::from_secs(86_400), 10);
        let mut refused = None;
        for op in 0..20u64 {
            let own = [Charge {
                counter: format!("k{op}"),
                scope: Scope::Account,
                amount: U256::from(1),
                limit: U256::from(1),
                window: Window::Lifetime,
            }];
            let r = Reservation {
                op: B256::from(U256::from(op)),
                account: Address::ZERO,
                attempt: op + 1,
                now: t,
                charges: &own,
                guards: &[],
            };
            if let Err(e) = full.reserve(&r).await {
                refused = Some((op, e));
                break;
            }
        }
        let (op, e) = refused.expect("a full store refuses");
        assert_eq!(op, 5, "five ops of two entries each fill ten");
        assert!(matches!(e, StoreError::Unavailable(m) if m.contains("max_entries")));
        assert_eq!(full.entries(), 10);
    }
}
