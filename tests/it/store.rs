//! The store backends: one conformance suite run on [`MemoryStore`] and on [`RedisStore`] against
//! the Redis server on 127.0.0.1:6379, plus a differential run comparing the two step by step,
//! concurrency, and failure and recovery of the Redis connection.
//!
//! Every Redis test uses its own key prefix and deletes only its own keys when it ends.

use std::future::Future;

use crate::redis_topology::{Cluster, Sentinels, TlsRedis};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256};
use opgate::store::memory::MemoryStore;
use opgate::store::redis::{Durability, RedisOptions, RedisStore};
use opgate::store::target::Target;
use opgate::store::{
    Charge, CounterRef, Reservation, Reserved, Scope, Store, StoreError, Ticket, Usage, Window, DEFAULT_DEDUPE_TTL,
};

const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// A pinned clock, in the past: relative expiries keep keys alive, absolute ones would not.
const T: u64 = 1_700_000_000;
const DAY: u64 = 86_400;

// ---------------------------------------------------------------------------------------------
// Backends

static NEXT_PREFIX: AtomicUsize = AtomicUsize::new(0);

fn unique_prefix() -> String {
    format!(
        "opgate-test:{}:{}:",
        std::process::id(),
        NEXT_PREFIX.fetch_add(1, Ordering::Relaxed)
    )
}

/// A Redis-backed store whose keys are deleted when it is dropped (even after a failed assertion).
struct RedisBackend {
    store: Store,
    prefix: String,
}

impl RedisBackend {
    async fn new() -> Self {
        Self::with_ttl(DEFAULT_DEDUPE_TTL).await
    }

    async fn with_ttl(dedupe_ttl: Duration) -> Self {
        let prefix = unique_prefix();
        let store = RedisStore::connect(REDIS_URL, &prefix, Duration::from_secs(5), dedupe_ttl)
            .await
            .expect("connect");
        store.ping().await.expect("the test Redis on 127.0.0.1:6379 answers");
        Self {
            store: Store::Redis(store),
            prefix,
        }
    }

    /// A store on a private topology (cluster, Sentinel, TLS): its keys go with the servers.
    async fn on(url: &str, durability: Durability, ca: Option<&std::path::Path>) -> Store {
        Self::on_prefix(url, durability, ca, unique_prefix()).await
    }

    async fn on_prefix(url: &str, durability: Durability, ca: Option<&std::path::Path>, prefix: String) -> Store {
        let target = Target::parse(url).expect("a valid URL");
        let store = RedisStore::connect_with(
            &target,
            RedisOptions {
                prefix,
                timeout: Duration::from_secs(5),
                dedupe_ttl: DEFAULT_DEDUPE_TTL,
                durability,
                ca_pem: ca.map(|p| std::fs::read(p).expect("the CA file")),
            },
        )
        .await
        .expect("connect");
        store.ping().await.expect("the topology answers");
        Store::Redis(store)
    }

    /// Every key of this store: the registry's tag and the tags of what it owns.
    fn pattern(&self) -> String {
        format!("{{{}*", self.prefix)
    }
}

impl Drop for RedisBackend {
    fn drop(&mut self) {
        let keys = scan(&self.pattern());
        if !keys.is_empty() {
            let mut con = sync_connection();
            let _: Result<i64, _> = redis::cmd("DEL").arg(&keys).query(&mut con);
        }
    }
}

fn sync_connection() -> redis::Connection {
    redis::Client::open(REDIS_URL)
        .and_then(|c| c.get_connection())
        .expect("test Redis connection")
}

/// Every key matching `pattern`.
fn scan(pattern: &str) -> Vec<String> {
    let mut con = sync_connection();
    let mut cursor = 0u64;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query(&mut con)
            .expect("SCAN");
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

fn memory() -> Store {
    Store::Memory(MemoryStore::default())
}

/// Runs each listed `async fn(&Store)` once on memory and once on Redis, and defines
/// `conform_on(url, durability, ca)`, which runs them all on a private topology, each on a fresh
/// prefix.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        async fn conform_on(url: &str, durability: Durability, ca: Option<&std::path::Path>) {
            $(
                let store = RedisBackend::on(url, durability, ca).await;
                $name(&store).await;
            )*
        }

        mod on_memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&super::memory()).await;
                }
            )*
        }
        mod on_redis {
            $(
                #[tokio::test]
                async fn $name() {
                    let backend = super::RedisBackend::new().await;
                    super::$name(&backend.store).await;
                }
            )*
        }
    };
}

conformance!(
    limits_are_exact_at_the_boundary,
    nothing_is_charged_unless_everything_is,
    one_counter_twice_in_one_reservation_accumulates,
    fixed_windows_roll_over,
    anchored_windows_open_and_close,
    schedules_release_units_over_time,
    an_op_hash_is_charged_once,
    a_committed_reservation_is_not_refunded,
    a_refund_restores_exactly,
    a_refund_after_rollover_leaves_the_new_window_alone,
    revocations_refuse_reservations,
    the_registry_stores_and_versions,
    amounts_are_exact_up_to_u256_max,
    usage_reports_every_window,
    a_reservation_without_charges_still_dedupes,
    shared_counters_are_charged_with_the_accounts_or_not_at_all,
    accounts_keep_their_own_counters_and_share_the_shared,
    only_the_reserving_attempt_refunds,
    a_send_that_relied_on_a_reservation_keeps_it_charged,
    a_refund_closes_an_anchored_window_it_opened_alone,
);

// ---------------------------------------------------------------------------------------------
// Helpers

fn op(n: u64) -> B256 {
    B256::from(U256::from(n))
}

fn u(n: u64) -> U256 {
    U256::from(n)
}

/// The account every conformance reservation is made for.
const ACCOUNT: Address = Address::repeat_byte(0xac);

/// An account counter.
fn charge(counter: &str, amount: U256, limit: U256, window: Window) -> Charge {
    Charge {
        counter: counter.to_owned(),
        scope: Scope::Account,
        amount,
        limit,
        window,
    }
}

/// A counter shared by every account.
fn shared(counter: &str, amount: U256, limit: U256, window: Window) -> Charge {
    Charge {
        scope: Scope::Shared,
        ..charge(counter, amount, limit, window)
    }
}

/// The attempt the helpers reserve `op` with (one per op, so a test's own refunds are allowed).
fn attempt_of(op: B256) -> u64 {
    u64::from_be_bytes(op[24..].try_into().expect("8 bytes"))
        .wrapping_add(1)
        .max(1)
}

/// The ticket of the helpers' reservation of `op`.
fn ticket(op: B256) -> Ticket {
    Ticket {
        op,
        account: ACCOUNT,
        attempt: attempt_of(op),
        shared: true,
    }
}

/// Account counters to read.
fn refs(counters: &[(String, Window)]) -> Vec<CounterRef> {
    counters
        .iter()
        .map(|(name, window)| CounterRef {
            scope: Scope::Account,
            counter: name.clone(),
            window: *window,
        })
        .collect()
}

async fn reserve(s: &Store, op: B256, now: u64, charges: &[Charge]) -> Reserved {
    s.reserve(&Reservation {
        op,
        account: ACCOUNT,
        attempt: attempt_of(op),
        now,
        charges,
        guards: &[],
    })
    .await
    .expect("reserve")
}

async fn usage(s: &Store, counter: &str, window: Window, now: u64) -> Usage {
    let mut all = s
        .usage(ACCOUNT, &refs(&[(counter.to_owned(), window)]), now)
        .await
        .expect("usage");
    assert_eq!(all.len(), 1);
    all.remove(0)
}

async fn used(s: &Store, counter: &str, window: Window, now: u64) -> U256 {
    usage(s, counter, window, now).await.used
}

const LIFETIME: Window = Window::Lifetime;
const MINUTE: Window = Window::Fixed { period: 60 };
const ANCHORED: Window = Window::Anchored { period: 100 };

fn not_yet(index: usize, available_at: u64) -> Reserved {
    Reserved::NotYetAvailable { index, available_at }
}

/// The usage of a counter that is not a schedule.
fn counted(used: U256, resets_at: Option<u64>) -> Usage {
    Usage {
        used,
        resets_at,
        available_at: None,
    }
}

/// The usage of a schedule.
fn scheduled(used: U256, available_at: Option<u64>) -> Usage {
    Usage {
        used,
        resets_at: None,
        available_at,
    }
}

fn exceeded(index: usize, used: U256, resets_at: Option<u64>) -> Reserved {
    Reserved::Exceeded { index, used, resets_at }
}

// ---------------------------------------------------------------------------------------------
// Conformance

async fn limits_are_exact_at_the_boundary(s: &Store) {
    let c = |amount| [charge("spend", u(amount), u(10), LIFETIME)];
    assert_eq!(reserve(s, op(1), T, &c(4)).await, Reserved::Charged);
    assert_eq!(reserve(s, op(2), T, &c(6)).await, Reserved::Charged);
    assert_eq!(used(s, "spend", LIFETIME, T).await, u(10));
    assert_eq!(reserve(s, op(3), T, &c(1)).await, exceeded(0, u(10), None));
    assert_eq!(
        reserve(s, op(4), T, &c(0)).await,
        Reserved::Charged,
        "0 more stays within the limit"
    );

    // A fixed window reports when it resets.
    let f = |amount| [charge("calls", u(amount), u(3), MINUTE)];
    assert_eq!(reserve(s, op(5), T, &f(3)).await, Reserved::Charged);
    let end = T - T % 60 + 60;
    assert_eq!(reserve(s, op(6), T, &f(1)).await, exceeded(0, u(3), Some(end)));
    // A single charge over the limit on an unused counter.
    assert_eq!(
        reserve(s, op(7), T, &[charge("big", u(11), u(10), LIFETIME)]).await,
        exceeded(0, u(0), None)
    );
    assert_eq!(used(s, "spend", LIFETIME, T).await, u(10));
}

async fn nothing_is_charged_unless_everything_is(s: &Store) {
    let charges = [
        charge("a", u(1), u(5), LIFETIME),
        charge("b", u(1), u(5), MINUTE),
        charge("c", u(1), u(5), ANCHORED),
        charge("d", u(3), u(2), LIFETIME),
    ];
    assert_eq!(reserve(s, op(1), T, &charges).await, exceeded(3, u(0), None));
    assert_eq!(used(s, "a", LIFETIME, T).await, u(0));
    assert_eq!(used(s, "b", MINUTE, T).await, u(0));
    assert_eq!(usage(s, "c", ANCHORED, T).await, counted(u(0), None));
    // The failed op hash was not remembered: it can still be charged.
    assert_eq!(reserve(s, op(1), T, &charges[..3]).await, Reserved::Charged);
    assert_eq!(used(s, "a", LIFETIME, T).await, u(1));
}

async fn one_counter_twice_in_one_reservation_accumulates(s: &Store) {
    let twice = |a, b| {
        [
            charge("target", u(a), u(5), LIFETIME),
            charge("target", u(b), u(5), LIFETIME),
        ]
    };
    assert_eq!(reserve(s, op(1), T, &twice(3, 3)).await, exceeded(1, u(0), None));
    assert_eq!(used(s, "target", LIFETIME, T).await, u(0));
    assert_eq!(reserve(s, op(2), T, &twice(2, 3)).await, Reserved::Charged);
    assert_eq!(used(s, "target", LIFETIME, T).await, u(5));
    assert!(s.refund(&ticket(op(2))).await.expect("refund"));
    assert_eq!(used(s, "target", LIFETIME, T).await, u(0));

    // The same name with another window is another counter.
    let mixed = [
        charge("target", u(5), u(5), LIFETIME),
        charge("target", u(5), u(5), MINUTE),
    ];
    assert_eq!(reserve(s, op(3), T, &mixed).await, Reserved::Charged);

    // Twice into an anchored window the first charge opens.
    let anchored = [charge("w", u(2), u(3), ANCHORED), charge("w", u(2), u(3), ANCHORED)];
    assert_eq!(reserve(s, op(4), T, &anchored).await, exceeded(1, u(0), None));
    let anchored = [charge("w", u(1), u(3), ANCHORED), charge("w", u(2), u(3), ANCHORED)];
    assert_eq!(reserve(s, op(5), T, &anchored).await, Reserved::Charged);
    assert_eq!(usage(s, "w", ANCHORED, T + 1).await, counted(u(3), Some(T + 100)));
}

async fn fixed_windows_roll_over(s: &Store) {
    let start = T - T % 60;
    let c = [charge("calls", u(1), u(2), MINUTE)];
    assert_eq!(reserve(s, op(1), start, &c).await, Reserved::Charged);
    assert_eq!(reserve(s, op(2), start + 59, &c).await, Reserved::Charged);
    assert_eq!(
        reserve(s, op(3), start + 59, &c).await,
        exceeded(0, u(2), Some(start + 60))
    );
    assert_eq!(
        reserve(s, op(4), start + 60, &c).await,
        Reserved::Charged,
        "a new window"
    );
    assert_eq!(
        usage(s, "calls", MINUTE, start + 60).await,
        counted(u(1), Some(start + 120))
    );
    assert_eq!(
        usage(s, "calls", MINUTE, start + 30).await.used,
        u(2),
        "the old window is still readable"
    );
    assert_eq!(used(s, "calls", MINUTE, start + 600).await, u(0));
}

async fn anchored_windows_open_and_close(s: &Store) {
    let c = |amount| [charge("rate", u(amount), u(3), ANCHORED)];
    assert_eq!(usage(s, "rate", ANCHORED, T).await, counted(u(0), None));
    assert_eq!(
        reserve(s, op(1), T + 7, &c(2)).await,
        Reserved::Charged,
        "opens [T+7, T+107)"
    );
    assert_eq!(reserve(s, op(2), T + 50, &c(1)).await, Reserved::Charged);
    assert_eq!(
        reserve(s, op(3), T + 106, &c(1)).await,
        exceeded(0, u(3), Some(T + 107))
    );
    assert_eq!(usage(s, "rate", ANCHORED, T + 106).await, counted(u(3), Some(T + 107)));
    assert_eq!(usage(s, "rate", ANCHORED, T + 107).await, counted(u(0), None), "closed");
    assert_eq!(
        reserve(s, op(4), T + 500, &c(1)).await,
        Reserved::Charged,
        "opens [T+500, T+600)"
    );
    assert_eq!(usage(s, "rate", ANCHORED, T + 599).await, counted(u(1), Some(T + 600)));
    // Over the limit while no window is open: nothing opens, no reset time.
    assert_eq!(reserve(s, op(5), T + 600, &c(4)).await, exceeded(0, u(0), None));
    assert_eq!(
        reserve(s, op(6), T + 601, &c(3)).await,
        Reserved::Charged,
        "opens at T+601, not T+600"
    );
    assert_eq!(
        reserve(s, op(7), T + 700, &c(1)).await,
        exceeded(0, u(3), Some(T + 701))
    );
}

async fn schedules_release_units_over_time(s: &Store) {
    let w = Window::Schedule {
        start_at: T + 10,
        interval: 60,
    };
    let c = [charge("slots", u(1), u(3), w)];
    assert_eq!(reserve(s, op(1), T, &c).await, not_yet(0, T + 10));
    assert_eq!(usage(s, "slots", w, T).await, scheduled(u(0), Some(T + 10)));
    assert_eq!(reserve(s, op(1), T + 10, &c).await, Reserved::Charged);
    assert_eq!(reserve(s, op(2), T + 20, &c).await, not_yet(0, T + 70));
    assert_eq!(reserve(s, op(2), T + 70, &c).await, Reserved::Charged);
    // Two units in one reservation: the second must be due too.
    let two = [charge("slots", u(1), u(4), w), charge("slots", u(1), u(4), w)];
    assert_eq!(reserve(s, op(3), T + 130, &two).await, not_yet(1, T + 190));
    assert_eq!(reserve(s, op(3), T + 130, &c).await, Reserved::Charged);
    assert_eq!(usage(s, "slots", w, T + 130).await, scheduled(u(3), Some(T + 190)));
    // Exhausted: the count is checked before the schedule.
    assert_eq!(reserve(s, op(4), T + 140, &c).await, exceeded(0, u(3), None));
    assert_eq!(reserve(s, op(4), T + 10_000, &c).await, exceeded(0, u(3), None));
    // A refund gives the slot back.
    assert!(s.refund(&ticket(op(3))).await.expect("refund"));
    assert_eq!(reserve(s, op(5), T + 10_000, &c).await, Reserved::Charged);
    // Times past u64::MAX are reported as u64::MAX.
    let far = Window::Schedule {
        start_at: u64::MAX - 1,
        interval: u64::MAX,
    };
    let c = [charge("far", u(1), u(3), far)];
    assert_eq!(reserve(s, op(6), u64::MAX - 1, &c).await, Reserved::Charged);
    assert_eq!(reserve(s, op(7), u64::MAX - 1, &c).await, not_yet(0, u64::MAX));
}

async fn an_op_hash_is_charged_once(s: &Store) {
    let c = [charge("n", u(1), u(100), LIFETIME)];
    assert_eq!(reserve(s, op(1), T, &c).await, Reserved::Charged);
    assert_eq!(reserve(s, op(1), T + 1, &c).await, Reserved::AlreadyCharged);
    s.commit(&ticket(op(1))).await.expect("commit");
    assert_eq!(
        reserve(s, op(1), T + DAY - 1, &c).await,
        Reserved::AlreadyCharged,
        "committed: still remembered"
    );
    assert_eq!(used(s, "n", LIFETIME, T).await, u(1));
    // The record lives for the dedupe TTL of the callers' clock.
    assert_eq!(reserve(s, op(1), T + DAY, &c).await, Reserved::Charged);
    assert_eq!(used(s, "n", LIFETIME, T).await, u(2));
    // A duplicate is answered as such even when its charges would not fit any more.
    let big = [charge("n", u(1000), u(100), LIFETIME)];
    assert_eq!(reserve(s, op(1), T + DAY, &big).await, Reserved::AlreadyCharged);
}

async fn a_committed_reservation_is_not_refunded(s: &Store) {
    let c = [charge("n", u(3), u(100), LIFETIME), charge("m", u(3), u(100), MINUTE)];
    assert_eq!(reserve(s, op(1), T, &c).await, Reserved::Charged);
    s.commit(&ticket(op(1))).await.expect("commit");
    s.commit(&ticket(op(1))).await.expect("commit twice");
    assert!(!s.refund(&ticket(op(1))).await.expect("refund"));
    assert_eq!(used(s, "n", LIFETIME, T).await, u(3));
    assert_eq!(used(s, "m", MINUTE, T).await, u(3));
    assert_eq!(reserve(s, op(1), T, &c).await, Reserved::AlreadyCharged);
    // Unknown ops.
    assert!(!s.refund(&ticket(op(2))).await.expect("refund unknown"));
    s.commit(&ticket(op(2))).await.expect("commit unknown");
    assert_eq!(
        reserve(s, op(2), T, &c).await,
        Reserved::Charged,
        "committing an unknown op records nothing"
    );
}

async fn a_refund_restores_exactly(s: &Store) {
    let sched = Window::Schedule {
        start_at: 0,
        interval: 1,
    };
    let big = U256::from(1u64) << 200;
    let before = [
        charge("l", big, U256::MAX, LIFETIME),
        charge("f", u(7), u(100), MINUTE),
        charge("a", u(9), u(100), ANCHORED),
        charge("s", u(1), u(10), sched),
    ];
    assert_eq!(reserve(s, op(1), T, &before).await, Reserved::Charged);
    let charges = [
        charge("l", big + u(1), U256::MAX, LIFETIME),
        charge("f", u(5), u(100), MINUTE),
        charge("f", u(6), u(100), MINUTE),
        charge("a", u(20), u(100), ANCHORED),
        charge("s", u(1), u(10), sched),
    ];
    assert_eq!(reserve(s, op(2), T + 1, &charges).await, Reserved::Charged);
    assert_eq!(used(s, "l", LIFETIME, T + 1).await, big + big + u(1));
    assert_eq!(used(s, "f", MINUTE, T + 1).await, u(18));
    assert!(s.refund(&ticket(op(2))).await.expect("refund"));
    assert_eq!(used(s, "l", LIFETIME, T + 1).await, big);
    assert_eq!(used(s, "f", MINUTE, T + 1).await, u(7));
    assert_eq!(usage(s, "a", ANCHORED, T + 1).await, counted(u(9), Some(T + 100)));
    assert_eq!(used(s, "s", sched, T + 1).await, u(1));
    assert!(!s.refund(&ticket(op(2))).await.expect("refund twice"));
    assert_eq!(used(s, "l", LIFETIME, T + 1).await, big);
    // The hash is forgotten: a later send is charged again.
    assert_eq!(reserve(s, op(2), T + 2, &charges).await, Reserved::Charged);
    assert_eq!(used(s, "f", MINUTE, T + 2).await, u(18));
}

async fn a_refund_after_rollover_leaves_the_new_window_alone(s: &Store) {
    let start = T - T % 60;
    let f = |amount| [charge("f", u(amount), u(100), MINUTE)];
    assert_eq!(reserve(s, op(1), start + 10, &f(5)).await, Reserved::Charged);
    assert_eq!(reserve(s, op(2), start + 70, &f(3)).await, Reserved::Charged);
    assert!(s.refund(&ticket(op(1))).await.expect("refund"));
    assert_eq!(used(s, "f", MINUTE, start + 70).await, u(3));
    assert_eq!(
        used(s, "f", MINUTE, start + 10).await,
        u(0),
        "the old window got its refund"
    );

    let a = |amount| [charge("a", u(amount), u(100), ANCHORED)];
    assert_eq!(reserve(s, op(3), T, &a(5)).await, Reserved::Charged);
    assert_eq!(
        reserve(s, op(4), T + 100, &a(2)).await,
        Reserved::Charged,
        "a new window"
    );
    assert!(s.refund(&ticket(op(3))).await.expect("refund"));
    assert_eq!(usage(s, "a", ANCHORED, T + 100).await, counted(u(2), Some(T + 200)));
    // Within its own window, a refund does apply.
    assert_eq!(reserve(s, op(5), T + 150, &a(4)).await, Reserved::Charged);
    assert!(s.refund(&ticket(op(5))).await.expect("refund"));
    assert_eq!(used(s, "a", ANCHORED, T + 150).await, u(2));
}

async fn revocations_refuse_reservations(s: &Store) {
    let guards = ["sender:0xaa".to_owned(), "signer:0xbb".to_owned()];
    let c = [charge("n", u(1), u(10), LIFETIME)];
    let r = |op, now| Reservation {
        op,
        account: ACCOUNT,
        attempt: attempt_of(op),
        now,
        charges: &c,
        guards: &guards,
    };
    assert_eq!(s.revoked(&guards).await.expect("revoked"), None);
    assert_eq!(s.revoked(&[]).await.expect("revoked of none"), None);
    let v0 = s.version().await.expect("version");

    s.revoke("signer:0xbb", T).await.expect("revoke");
    let v1 = s.version().await.expect("version");
    assert_ne!(v1, v0);
    assert_eq!(s.revoked(&guards).await.expect("revoked"), Some(1));
    assert_eq!(
        s.reserve(&r(op(1), T)).await.expect("reserve"),
        Reserved::Revoked { index: 1 }
    );
    assert_eq!(used(s, "n", LIFETIME, T).await, u(0));

    s.revoke("sender:0xaa", T + 5).await.expect("revoke");
    s.revoke("signer:0xbb", T + 9).await.expect("revoke again");
    assert_eq!(
        s.reserve(&r(op(1), T)).await.expect("reserve"),
        Reserved::Revoked { index: 0 }
    );
    assert_eq!(
        s.list_revoked().await.expect("list"),
        vec![("sender:0xaa".to_owned(), T + 5), ("signer:0xbb".to_owned(), T)],
        "ordered by subject; a second revocation keeps the first time"
    );
    // Revocation wins over a duplicate.
    assert!(s.unrevoke("sender:0xaa").await.expect("unrevoke"));
    assert!(s.unrevoke("signer:0xbb").await.expect("unrevoke"));
    let v2 = s.version().await.expect("version");
    assert!(!s.unrevoke("signer:0xbb").await.expect("unrevoke twice"));
    assert_ne!(s.version().await.expect("version"), v2);
    assert_eq!(s.reserve(&r(op(1), T)).await.expect("reserve"), Reserved::Charged);
    s.revoke("signer:0xbb", T).await.expect("revoke");
    assert_eq!(
        s.reserve(&r(op(1), T)).await.expect("reserve"),
        Reserved::Revoked { index: 1 }
    );
    assert_eq!(
        s.list_revoked().await.expect("list"),
        vec![("signer:0xbb".to_owned(), T)]
    );
}

async fn the_registry_stores_and_versions(s: &Store) {
    let mut versions = vec![s.version().await.expect("version")];
    let mut changed = |v: u64| {
        assert!(!versions.contains(&v), "version {v} seen before: {versions:?}");
        versions.push(v);
    };
    assert_eq!(s.get_permission("p1").await.expect("get"), None);
    let value = "{\"policy\": \"ü\\n\", \"x\": [1, 2]}\nsecond line";
    s.put_permission("p1", value).await.expect("put");
    changed(s.version().await.expect("version"));
    assert_eq!(s.get_permission("p1").await.expect("get").as_deref(), Some(value));
    s.put_permission("p1", "v2").await.expect("overwrite");
    changed(s.version().await.expect("version"));
    assert_eq!(s.get_permission("p1").await.expect("get").as_deref(), Some("v2"));
    s.put_permission("", "empty key").await.expect("put empty key");
    changed(s.version().await.expect("version"));
    assert_eq!(s.get_permission("").await.expect("get").as_deref(), Some("empty key"));
    assert!(s.delete_permission("p1").await.expect("delete"));
    changed(s.version().await.expect("version"));
    assert_eq!(s.get_permission("p1").await.expect("get"), None);
    assert!(!s.delete_permission("p1").await.expect("delete twice"));
    changed(s.version().await.expect("version"));
    assert_eq!(
        s.version().await.expect("version"),
        s.version().await.expect("version"),
        "reads do not change it"
    );
}

async fn amounts_are_exact_up_to_u256_max(s: &Store) {
    let big = (U256::from(1u64) << 200) + u(1);
    let c = |amount| [charge("wei", amount, U256::MAX, LIFETIME)];
    assert_eq!(reserve(s, op(1), T, &c(big)).await, Reserved::Charged);
    assert_eq!(reserve(s, op(2), T, &c(big)).await, Reserved::Charged);
    assert_eq!(used(s, "wei", LIFETIME, T).await, big * u(2));
    let rest = U256::MAX - big * u(2);
    assert_eq!(reserve(s, op(3), T, &c(rest)).await, Reserved::Charged);
    assert_eq!(used(s, "wei", LIFETIME, T).await, U256::MAX);
    // used + amount overflows U256: over every limit.
    assert_eq!(reserve(s, op(4), T, &c(u(1))).await, exceeded(0, U256::MAX, None));
    assert_eq!(reserve(s, op(4), T, &c(U256::MAX)).await, exceeded(0, U256::MAX, None));
    assert_eq!(reserve(s, op(4), T, &c(U256::ZERO)).await, Reserved::Charged);
    assert!(s.refund(&ticket(op(3))).await.expect("refund"));
    assert_eq!(used(s, "wei", LIFETIME, T).await, big * u(2));

    // Wei-sized limits, one below and at the boundary.
    let half_eth = U256::from(500_000_000_000_000_000u64);
    let limit = U256::from(10u64).pow(u(18)) * u(3) + u(1);
    let d = |amount| [charge("eth", amount, limit, MINUTE)];
    for n in 10..16 {
        assert_eq!(reserve(s, op(n), T, &d(half_eth)).await, Reserved::Charged);
    }
    assert_eq!(
        reserve(s, op(16), T, &d(u(2))).await,
        exceeded(0, half_eth * u(6), Some(T - T % 60 + 60))
    );
    assert_eq!(reserve(s, op(16), T, &d(u(1))).await, Reserved::Charged);
    assert_eq!(used(s, "eth", MINUTE, T).await, limit);

    // Carries and borrows across every 7-digit limb.
    let nines = U256::from(9_999_999u64);
    let e = |amount| [charge("limbs", amount, U256::MAX, LIFETIME)];
    assert_eq!(reserve(s, op(20), T, &e(nines)).await, Reserved::Charged);
    assert_eq!(reserve(s, op(21), T, &e(u(1))).await, Reserved::Charged);
    assert_eq!(used(s, "limbs", LIFETIME, T).await, u(10_000_000));
    let huge = U256::MAX - U256::from(10_000_000u64);
    assert_eq!(reserve(s, op(22), T, &e(huge)).await, Reserved::Charged);
    assert_eq!(used(s, "limbs", LIFETIME, T).await, U256::MAX);
    assert!(s.refund(&ticket(op(21))).await.expect("refund"));
    assert_eq!(used(s, "limbs", LIFETIME, T).await, U256::MAX - u(1));
    assert!(s.refund(&ticket(op(22))).await.expect("refund"));
    assert_eq!(used(s, "limbs", LIFETIME, T).await, nines);
}

async fn usage_reports_every_window(s: &Store) {
    let sched = Window::Schedule {
        start_at: T,
        interval: 30,
    };
    let counters: Vec<(String, Window)> = vec![
        ("l".into(), LIFETIME),
        ("f".into(), MINUTE),
        ("a".into(), ANCHORED),
        ("s".into(), sched),
        ("unused".into(), MINUTE),
    ];
    assert_eq!(s.usage(ACCOUNT, &refs(&[]), T).await.expect("usage of none"), vec![]);
    let charges: Vec<Charge> = counters[..4]
        .iter()
        .map(|(name, w)| charge(name, u(1), u(9), *w))
        .collect();
    assert_eq!(reserve(s, op(1), T, &charges).await, Reserved::Charged);
    let end = T - T % 60 + 60;
    assert_eq!(
        s.usage(ACCOUNT, &refs(&counters), T + 1).await.expect("usage"),
        vec![
            counted(u(1), None),
            counted(u(1), Some(end)),
            counted(u(1), Some(T + 100)),
            scheduled(u(1), Some(T + 30)),
            counted(u(0), Some(end)),
        ]
    );
    // Reading changes nothing.
    assert_eq!(
        s.usage(ACCOUNT, &refs(&counters), T + 1).await.expect("usage"),
        s.usage(ACCOUNT, &refs(&counters), T + 1).await.expect("usage")
    );
    assert_eq!(reserve(s, op(2), T + 1, &charges[..3]).await, Reserved::Charged);
    assert_eq!(used(s, "l", LIFETIME, T + 1).await, u(2));
}

async fn a_reservation_without_charges_still_dedupes(s: &Store) {
    assert_eq!(reserve(s, op(1), T, &[]).await, Reserved::Charged);
    assert!(s.refund(&ticket(op(1))).await.expect("refund"));
    assert_eq!(reserve(s, op(1), T, &[]).await, Reserved::Charged);
    assert_eq!(reserve(s, op(1), T, &[]).await, Reserved::AlreadyCharged);
    assert!(s.ping().await.is_ok());
}

async fn shared_counters_are_charged_with_the_accounts_or_not_at_all(s: &Store) {
    let both = |own: u64, common: u64| {
        [
            shared("common", u(common), u(10), LIFETIME),
            charge("own", u(own), u(10), MINUTE),
        ]
    };
    assert_eq!(reserve(s, op(1), T, &both(4, 4)).await, Reserved::Charged);
    // The shared counter refuses: the account's charge (made first on a cluster) is given back.
    assert_eq!(reserve(s, op(2), T, &both(1, 7)).await, exceeded(0, u(4), None));
    assert_eq!(used(s, "own", MINUTE, T).await, u(4));
    // The account's counter refuses (it is checked first): the shared one is never touched.
    assert_eq!(
        reserve(s, op(3), T, &both(7, 1)).await,
        exceeded(1, u(4), Some(T - T % 60 + 60))
    );
    let common = CounterRef {
        scope: Scope::Shared,
        counter: "common".into(),
        window: LIFETIME,
    };
    let read_common = || async { s.usage(ACCOUNT, std::slice::from_ref(&common), T).await.expect("usage")[0].used };
    assert_eq!(read_common().await, u(4));
    // A revoked guard refuses the whole op, shared part included.
    s.revoke("sender:x", T).await.expect("revoke");
    let r = Reservation {
        op: op(4),
        account: ACCOUNT,
        attempt: attempt_of(op(4)),
        now: T,
        charges: &both(1, 1),
        guards: &["sender:x".to_owned()],
    };
    assert_eq!(s.reserve(&r).await.expect("reserve"), Reserved::Revoked { index: 0 });
    assert_eq!(used(s, "own", MINUTE, T).await, u(4));
    assert_eq!(read_common().await, u(4));
    s.unrevoke("sender:x").await.expect("unrevoke");
    // A refund gives back both parts; a commit keeps both.
    assert_eq!(reserve(s, op(5), T, &both(2, 3)).await, Reserved::Charged);
    assert_eq!((used(s, "own", MINUTE, T).await, read_common().await), (u(6), u(7)));
    assert!(s.refund(&ticket(op(5))).await.expect("refund"));
    assert_eq!((used(s, "own", MINUTE, T).await, read_common().await), (u(4), u(4)));
    s.commit(&ticket(op(1))).await.expect("commit");
    assert!(!s.refund(&ticket(op(1))).await.expect("refund of a committed op"));
    assert_eq!(read_common().await, u(4));
}

async fn accounts_keep_their_own_counters_and_share_the_shared(s: &Store) {
    let other = Address::repeat_byte(0x0b);
    let c = [charge("n", u(1), u(1), LIFETIME), shared("all", u(1), u(2), LIFETIME)];
    let reserve_for = |account, n: u64| {
        let c = &c;
        async move {
            s.reserve(&Reservation {
                op: op(n),
                account,
                attempt: attempt_of(op(n)),
                now: T,
                charges: c,
                guards: &[],
            })
            .await
            .expect("reserve")
        }
    };
    assert_eq!(reserve_for(ACCOUNT, 1).await, Reserved::Charged);
    // Another account's "n" is another counter; "all" is the same one.
    assert_eq!(reserve_for(other, 2).await, Reserved::Charged);
    assert_eq!(
        reserve_for(Address::repeat_byte(0x0c), 3).await,
        exceeded(1, u(2), None)
    );
    assert_eq!(reserve_for(ACCOUNT, 4).await, exceeded(0, u(1), None));
    let n = [CounterRef {
        scope: Scope::Account,
        counter: "n".into(),
        window: LIFETIME,
    }];
    assert_eq!(s.usage(other, &n, T).await.expect("usage")[0].used, u(1));
    assert_eq!(
        s.usage(Address::repeat_byte(0x0c), &n, T).await.expect("usage")[0].used,
        u(0)
    );
}

async fn a_refund_closes_an_anchored_window_it_opened_alone(s: &Store) {
    let a = |amount| [charge("a", u(amount), u(100), ANCHORED)];
    assert_eq!(reserve(s, op(1), T, &a(5)).await, Reserved::Charged);
    assert!(s.refund(&ticket(op(1))).await.expect("refund"));
    // As if never opened: the next charge opens its own window.
    assert_eq!(usage(s, "a", ANCHORED, T + 50).await, counted(u(0), None));
    assert_eq!(reserve(s, op(2), T + 50, &a(5)).await, Reserved::Charged);
    assert_eq!(usage(s, "a", ANCHORED, T + 50).await, counted(u(5), Some(T + 150)));
    // A window with another op's charge in it stays open after a refund.
    assert_eq!(reserve(s, op(3), T + 60, &a(7)).await, Reserved::Charged);
    assert!(s.refund(&ticket(op(2))).await.expect("refund"));
    assert_eq!(usage(s, "a", ANCHORED, T + 60).await, counted(u(7), Some(T + 150)));
}

async fn only_the_reserving_attempt_refunds(s: &Store) {
    let c = [charge("n", u(1), u(10), LIFETIME), shared("m", u(1), u(10), LIFETIME)];
    assert_eq!(reserve(s, op(1), T, &c).await, Reserved::Charged);
    let stranger = Ticket {
        attempt: attempt_of(op(1)) + 1,
        ..ticket(op(1))
    };
    assert!(!s.refund(&stranger).await.expect("refund by another attempt"));
    assert_eq!(used(s, "n", LIFETIME, T).await, u(1));
    assert!(s.refund(&ticket(op(1))).await.expect("refund by the reserving attempt"));
    assert_eq!(used(s, "n", LIFETIME, T).await, u(0));
}

async fn a_send_that_relied_on_a_reservation_keeps_it_charged(s: &Store) {
    let c = [charge("n", u(1), u(10), LIFETIME)];
    assert_eq!(reserve(s, op(1), T, &c).await, Reserved::Charged);
    // A second send of the same op (another replica, a client's retry) relays on the first's
    // charge: the first attempt can no longer take it back, whatever happens to it.
    let again = Reservation {
        op: op(1),
        account: ACCOUNT,
        attempt: 77,
        now: T + 1,
        charges: &c,
        guards: &[],
    };
    assert_eq!(s.reserve(&again).await.expect("reserve"), Reserved::AlreadyCharged);
    assert!(!s.refund(&ticket(op(1))).await.expect("refund"));
    assert!(!s.refund(&again.ticket()).await.expect("refund"));
    assert_eq!(used(s, "n", LIFETIME, T).await, u(1));
    s.commit(&again.ticket()).await.expect("commit");
    assert_eq!(
        reserve(s, op(1), T + 2, &c).await,
        Reserved::AlreadyCharged,
        "still one charge for the op"
    );
}

// ---------------------------------------------------------------------------------------------
// Both backends, step by step

/// A tiny deterministic generator (xorshift64*), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

#[tokio::test]
async fn memory_and_redis_agree_on_random_histories() {
    let redis = RedisBackend::new().await;
    agrees_with_memory(&redis.store).await;
}

/// Runs one random history on a memory store and on `other`, step by step, comparing every answer
/// and every counter.
pub(crate) async fn agrees_with_memory(other: &Store) {
    let mem = memory();
    let mut rng = Rng(0x0bad_cafe_f00d_d00d);
    let two53 = U256::from(1u64 << 53);
    let amounts = [
        u(0),
        u(1),
        u(2),
        u(3),
        u(9_999_999),
        u(10_000_000),
        two53 + u(1),
        (U256::from(1u64) << 200) + u(1),
        U256::MAX / u(2),
        U256::MAX - u(1),
        U256::MAX,
    ];
    let limits = [
        u(3),
        u(10),
        u(20_000_000),
        two53 * u(3),
        U256::MAX / u(2) + u(1),
        U256::MAX,
    ];
    let windows = [
        LIFETIME,
        MINUTE,
        Window::Fixed { period: 300 },
        ANCHORED,
        Window::Anchored { period: 45 },
        Window::Schedule {
            start_at: T + 100,
            interval: 20,
        },
    ];
    let names = ["x", "y", "z"];
    let mut now = T;
    let mut counters: Vec<CounterRef> = Vec::new();
    for scope in [Scope::Account, Scope::Shared] {
        for name in names {
            for w in windows {
                counters.push(CounterRef {
                    scope,
                    counter: name.to_owned(),
                    window: w,
                });
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for step in 0..2500 {
        now += rng.pick(&[0, 0, 1, 5, 17, 40, 100]);
        let action = rng.below(10);
        let id = op(rng.below(40));
        let (a, b) = match action {
            0..=5 => {
                let charges: Vec<Charge> = (0..rng.below(4))
                    .map(|_| Charge {
                        scope: rng.pick(&[Scope::Account, Scope::Account, Scope::Shared]),
                        ..charge(
                            rng.pick(&names),
                            rng.pick(&amounts),
                            rng.pick(&limits),
                            rng.pick(&windows),
                        )
                    })
                    .collect();
                let guards = if rng.below(10) == 0 {
                    vec!["g:revoked".to_owned()]
                } else {
                    vec!["g:ok".to_owned()]
                };
                let r = Reservation {
                    op: id,
                    account: ACCOUNT,
                    attempt: attempt_of(id),
                    now,
                    charges: &charges,
                    guards: &guards,
                };
                let (a, b) = (mem.reserve(&r).await, other.reserve(&r).await);
                seen.insert(
                    format!("{a:?}")
                        .split([' ', '(', ')'])
                        .nth(1)
                        .unwrap_or_default()
                        .to_owned(),
                );
                (format!("{a:?}"), format!("{b:?}"))
            }
            6 => (
                format!("{:?}", mem.commit(&ticket(id)).await),
                format!("{:?}", other.commit(&ticket(id)).await),
            ),
            7 | 8 => {
                // Now and then a refund by another attempt, which must change nothing.
                let mut t = ticket(id);
                if rng.below(4) == 0 {
                    t.attempt = t.attempt.wrapping_add(1_000);
                }
                let (a, b) = (mem.refund(&t).await, other.refund(&t).await);
                seen.insert(format!("refund {a:?}"));
                (format!("{a:?}"), format!("{b:?}"))
            }
            _ => {
                if rng.below(2) == 0 {
                    mem.revoke("g:revoked", now).await.expect("revoke");
                    other.revoke("g:revoked", now).await.expect("revoke");
                } else {
                    mem.unrevoke("g:revoked").await.expect("unrevoke");
                    other.unrevoke("g:revoked").await.expect("unrevoke");
                }
                (String::new(), String::new())
            }
        };
        assert_eq!(a, b, "step {step} (action {action}, now {now})");
        let (ua, ub) = (
            mem.usage(ACCOUNT, &counters, now).await,
            other.usage(ACCOUNT, &counters, now).await,
        );
        assert_eq!(ua, ub, "usage after step {step}");
    }
    assert_eq!(mem.version().await, other.version().await);
    let expected = [
        "AlreadyCharged",
        "Charged",
        "Exceeded",
        "NotYetAvailable",
        "Revoked",
        "refund Ok(false)",
        "refund Ok(true)",
    ];
    assert_eq!(
        seen.iter().map(String::as_str).collect::<Vec<_>>(),
        expected,
        "every outcome was exercised"
    );
}

// ---------------------------------------------------------------------------------------------
// Concurrency

async fn contend(stores: &[Arc<Store>]) -> (usize, usize) {
    let c = Arc::new([charge("contended", u(1), u(50), LIFETIME)]);
    let tasks: Vec<_> = (0..200u64)
        .map(|i| {
            let store = stores[i as usize % stores.len()].clone();
            let c = c.clone();
            tokio::spawn(async move {
                store
                    .reserve(&Reservation {
                        op: op(1000 + i),
                        account: ACCOUNT,
                        attempt: attempt_of(op(1000 + i)),
                        now: T,
                        charges: &c[..],
                        guards: &[],
                    })
                    .await
            })
        })
        .collect();
    let (mut charged, mut exceeded) = (0, 0);
    for task in tasks {
        match task.await.expect("task").expect("reserve") {
            Reserved::Charged => charged += 1,
            Reserved::Exceeded { used, .. } => {
                assert_eq!(used, u(50));
                exceeded += 1
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    (charged, exceeded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_never_pass_the_limit_on_memory() {
    let store = Arc::new(memory());
    assert_eq!(contend(std::slice::from_ref(&store)).await, (50, 150));
    assert_eq!(used(&store, "contended", LIFETIME, T).await, u(50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_never_pass_the_limit_across_redis_replicas() {
    let backend = RedisBackend::new().await;
    // Two replicas: two stores, each with its own connection, on the same prefix.
    let replica = || async {
        let store = RedisStore::connect(REDIS_URL, &backend.prefix, Duration::from_secs(5), DEFAULT_DEDUPE_TTL)
            .await
            .expect("connect");
        Arc::new(Store::Redis(store))
    };
    let stores = [replica().await, replica().await];
    assert_eq!(contend(&stores).await, (50, 150));
    assert_eq!(used(&backend.store, "contended", LIFETIME, T).await, u(50));
}

// ---------------------------------------------------------------------------------------------
// Redis specifics

#[tokio::test]
async fn every_redis_key_carries_the_hash_tag_and_a_relative_expiry() {
    let backend = RedisBackend::new().await;
    let s = &backend.store;
    let sched = Window::Schedule {
        start_at: 0,
        interval: 1,
    };
    let charges = [
        charge("l", u(1), u(9), LIFETIME),
        charge("f", u(1), u(9), MINUTE),
        charge("a", u(1), u(9), ANCHORED),
        charge("s", u(1), u(9), sched),
    ];
    assert_eq!(reserve(s, op(1), T, &charges).await, Reserved::Charged);
    s.revoke("g", T).await.expect("revoke");
    s.put_permission("p", "v").await.expect("put");

    assert_eq!(
        reserve(s, op(2), T, &[shared("g", u(1), u(9), LIFETIME)]).await,
        Reserved::Charged
    );
    s.rate_limit(&[("k", 10, 10)], std::time::SystemTime::now())
        .await
        .expect("rate limit");

    let tag = format!("{{{}}}", backend.prefix);
    let own = format!("{{{}a:{ACCOUNT:#x}}}", backend.prefix);
    let shared_tag = format!("{{{}p}}", backend.prefix);
    let mut keys = scan(&backend.pattern());
    keys.sort();
    let window = T / 60;
    let mut expected = vec![
        format!("{own}c:a100:a"),
        format!("{own}c:f60:{window}:f"),
        format!("{own}c:l:l"),
        format!("{own}c:s0+1:s"),
        format!("{own}op:{}", op(1)),
        format!("{own}op:{}", op(2)),
        format!("{shared_tag}c:l:g"),
        format!("{{{}rl}}k", backend.prefix),
        format!("{tag}perm:p"),
        format!("{tag}revoked"),
        format!("{tag}version"),
    ];
    expected.sort();
    assert_eq!(keys, expected);

    // The clock is pinned far in the past: an absolute expiry would have removed these already.
    let mut con = sync_connection();
    let mut ttl = |key: &str| -> i64 {
        let full = if key.starts_with("perm:") || key == "revoked" || key == "version" {
            format!("{tag}{key}")
        } else {
            format!("{own}{key}")
        };
        redis::cmd("TTL").arg(full).query(&mut con).expect("TTL")
    };
    let fixed = ttl(&format!("c:f60:{window}:f"));
    let fixed_expected = (T - T % 60 + 60 - T + 3600) as i64;
    assert!(
        (fixed_expected - 5..=fixed_expected).contains(&fixed),
        "fixed window ttl {fixed}"
    );
    let anchored = ttl("c:a100:a");
    assert!((3700 - 5..=3700).contains(&anchored), "anchored window ttl {anchored}");
    let record = ttl(&format!("op:{}", op(1)));
    assert!(
        (DAY as i64 - 5..=DAY as i64).contains(&record),
        "op record ttl {record}"
    );
    assert_eq!(ttl("c:l:l"), -1);
    assert_eq!(ttl("c:s0+1:s"), -1);
    assert_eq!(ttl("revoked"), -1);
}

#[tokio::test]
async fn malformed_redis_data_is_a_protocol_error() {
    let backend = RedisBackend::new().await;
    let s = &backend.store;
    let tag = format!("{{{}}}", backend.prefix);
    let own = format!("{{{}a:{ACCOUNT:#x}}}", backend.prefix);
    let mut con = sync_connection();
    let _: () = redis::cmd("SET")
        .arg(format!("{own}c:l:x"))
        .arg("12ab")
        .query(&mut con)
        .expect("SET");
    let _: () = redis::cmd("SET")
        .arg(format!("{own}c:a100:y"))
        .arg("oops")
        .query(&mut con)
        .expect("SET");
    let _: () = redis::cmd("SET")
        .arg(format!("{tag}version"))
        .arg("-3")
        .query(&mut con)
        .expect("SET");
    let x = [charge("x", u(1), u(9), LIFETIME)];
    let y = [charge("y", u(1), u(9), ANCHORED)];
    assert!(matches!(
        s.reserve(&Reservation {
            op: op(1),
            account: ACCOUNT,
            attempt: attempt_of(op(1)),
            now: T,
            charges: &x,
            guards: &[]
        })
        .await,
        Err(StoreError::Protocol(_))
    ));
    assert!(matches!(
        s.reserve(&Reservation {
            op: op(1),
            account: ACCOUNT,
            attempt: attempt_of(op(1)),
            now: T,
            charges: &y,
            guards: &[]
        })
        .await,
        Err(StoreError::Protocol(_))
    ));
    assert!(matches!(
        s.usage(ACCOUNT, &refs(&[("x".into(), LIFETIME)]), T).await,
        Err(StoreError::Protocol(_))
    ));
    assert!(matches!(
        s.usage(ACCOUNT, &refs(&[("y".into(), ANCHORED)]), T).await,
        Err(StoreError::Protocol(_))
    ));
    assert!(matches!(s.version().await, Err(StoreError::Protocol(_))));
    // Nothing was recorded for the failed op.
    assert!(!s.refund(&ticket(op(1))).await.expect("refund"));
}

#[tokio::test]
async fn an_invalid_prefix_or_url_is_refused() {
    let d = Duration::from_secs(1);
    for prefix in ["", "a{b", "a}b"] {
        assert!(
            RedisStore::connect(REDIS_URL, prefix, d, DEFAULT_DEDUPE_TTL)
                .await
                .is_err(),
            "{prefix:?}"
        );
    }
    assert!(RedisStore::connect("http://nope", "p:", d, DEFAULT_DEDUPE_TTL)
        .await
        .is_err());
}

// ---------------------------------------------------------------------------------------------
// Failures

const FAIL_TIMEOUT: Duration = Duration::from_millis(500);
const SLACK: Duration = Duration::from_secs(3);

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Awaits `f`, which must finish within the store timeout plus slack.
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(FAIL_TIMEOUT + SLACK, f)
        .await
        .expect("a store call returned within its timeout")
}

fn is_outage(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(_) | StoreError::Timeout(_))
}

async fn store_at(port: u16) -> Store {
    let url = format!("redis://127.0.0.1:{port}");
    let store = bounded(RedisStore::connect(
        &url,
        &unique_prefix(),
        FAIL_TIMEOUT,
        DEFAULT_DEDUPE_TTL,
    ))
    .await
    .expect("connect succeeds without a server");
    Store::Redis(store)
}

async fn try_reserve(s: &Store, n: u64) -> Result<Reserved, StoreError> {
    let c = [charge("n", u(1), u(100), LIFETIME)];
    s.reserve(&Reservation {
        op: op(n),
        account: ACCOUNT,
        attempt: attempt_of(op(n)),
        now: T,
        charges: &c,
        guards: &[],
    })
    .await
}

#[tokio::test]
async fn a_closed_port_fails_fast() {
    let s = store_at(free_port()).await;
    for n in 0..3 {
        let e = bounded(try_reserve(&s, n)).await.expect_err("nothing listens");
        assert!(is_outage(&e), "{e:?}");
        let e = bounded(s.ping()).await.expect_err("nothing listens");
        assert!(is_outage(&e), "{e:?}");
        let e = bounded(s.usage(ACCOUNT, &refs(&[("n".into(), LIFETIME)]), T))
            .await
            .expect_err("nothing listens");
        assert!(is_outage(&e), "{e:?}");
    }
}

#[tokio::test]
async fn a_silent_server_times_out() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let s = store_at(port).await;
    let e = bounded(try_reserve(&s, 1)).await.expect_err("no answer");
    assert!(matches!(e, StoreError::Timeout(_)), "{e:?}");
    let e = bounded(s.version()).await.expect_err("no answer");
    assert!(matches!(e, StoreError::Timeout(_)), "{e:?}");
    holder.abort();
}

/// A private `redis-server` on `port`, killed when dropped.
struct PrivateRedis(Child);

impl PrivateRedis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        Self(child)
    }

    fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Calls `reserve` until it succeeds (the store reconnects by itself), within 20 s.
async fn until_it_answers(s: &Store, n: u64) -> Reserved {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match bounded(try_reserve(s, n)).await {
            Ok(r) => return r,
            Err(e) => {
                assert!(is_outage(&e), "{e:?}");
                assert!(Instant::now() < deadline, "the store did not recover: {e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test]
async fn a_store_started_before_its_server_recovers_when_it_appears() {
    let port = free_port();
    let s = store_at(port).await;
    let e = bounded(try_reserve(&s, 1)).await.expect_err("no server yet");
    assert!(is_outage(&e), "{e:?}");

    let server = PrivateRedis::start(port);
    assert_eq!(until_it_answers(&s, 1).await, Reserved::Charged);
    assert_eq!(
        bounded(try_reserve(&s, 1)).await.expect("reserve"),
        Reserved::AlreadyCharged
    );

    // The server goes away: calls fail, and do not hang.
    server.stop();
    let e = bounded(try_reserve(&s, 2)).await.expect_err("server gone");
    assert!(is_outage(&e), "{e:?}");
    let e = bounded(s.ping()).await.expect_err("server gone");
    assert!(is_outage(&e), "{e:?}");

    // It comes back (empty): the same store reconnects.
    let _server = PrivateRedis::start(port);
    assert_eq!(until_it_answers(&s, 2).await, Reserved::Charged);
    assert_eq!(
        bounded(s.usage(ACCOUNT, &refs(&[("n".into(), LIFETIME)]), T))
            .await
            .expect("usage")[0]
            .used,
        u(1)
    );
}

// ---------------------------------------------------------------------------------------------
// Latency (a report, not an assertion): cargo test --release --test store -- --ignored --nocapture

#[tokio::test]
#[ignore = "a measurement; run explicitly"]
async fn reserve_latency_report() {
    let backend = RedisBackend::new().await;
    let s = &backend.store;
    let n: u64 = 10_000;
    let mut hist = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    let started = Instant::now();
    for i in 0..n {
        let charges = [
            charge(
                "spend",
                U256::from(500_000_000_000_000_000u64),
                U256::MAX,
                Window::Fixed { period: 86_400 },
            ),
            charge("calls", u(1), u(u64::MAX), Window::Anchored { period: 3600 }),
            charge("target", u(1), u(u64::MAX), LIFETIME),
        ];
        let t = Instant::now();
        let r = reserve(s, op(i), T + i / 100, &charges).await;
        hist.record(t.elapsed().as_micros() as u64).expect("record");
        assert_eq!(r, Reserved::Charged);
    }
    let total = started.elapsed();
    println!(
        "reserve, 3 charges, {n} sequential calls: p50 {} µs, p90 {} µs, p99 {} µs, max {} µs, {:.0} reserves/s",
        hist.value_at_quantile(0.50),
        hist.value_at_quantile(0.90),
        hist.value_at_quantile(0.99),
        hist.max(),
        n as f64 / total.as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// Cluster, Sentinel and TLS: the same suite on the servers production runs

/// Starts a topology off the runtime's threads (a start takes a few seconds of blocking waits).
async fn started<T: Send + 'static>(start: fn() -> T) -> T {
    tokio::task::spawn_blocking(start).await.expect("topology start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_on_a_redis_cluster() {
    let cluster = started(Cluster::start).await;
    conform_on(&cluster.seed_url(), Durability::Primary, None).await;
    agrees_with_memory(&RedisBackend::on(&cluster.seed_url(), Durability::Replica, None).await).await;

    // Accounts spread over the shards: 30 accounts' counters land on every primary.
    let s = RedisBackend::on(&cluster.seed_url(), Durability::Primary, None).await;
    for n in 0..30u64 {
        let account = Address::from_word(B256::from(U256::from(n + 1)));
        let r = Reservation {
            op: op(n),
            account,
            attempt: 1,
            now: T,
            charges: &[charge("spread", u(1), u(1), LIFETIME)],
            guards: &[],
        };
        assert_eq!(s.reserve(&r).await.expect("reserve"), Reserved::Charged);
    }
    for port in cluster.primaries() {
        let keys = cluster.keys_matching(port, "*c:l:spread");
        assert!(keys >= 3, "primary {port} holds {keys} of the 30 accounts' counters");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_through_sentinel() {
    let sentinels = started(Sentinels::start).await;
    conform_on(&sentinels.url(), Durability::Primary, None).await;
    agrees_with_memory(&RedisBackend::on(&sentinels.url(), Durability::Replica, None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_over_tls_with_an_acl_user() {
    let server = started(|| TlsRedis::with_user("alice", "s3cret:/@")).await;
    conform_on(
        &server.url_with_credentials(),
        Durability::Primary,
        Some(&server.ca_path()),
    )
    .await;

    // Without the CA (the web roots only), or without the credentials, nothing is reachable.
    let unreachable = |url: String, ca: Option<Vec<u8>>| async move {
        let store = RedisStore::connect_with(
            &Target::parse(&url).expect("URL"),
            RedisOptions {
                prefix: unique_prefix(),
                timeout: Duration::from_secs(2),
                dedupe_ttl: DEFAULT_DEDUPE_TTL,
                durability: Durability::Primary,
                ca_pem: ca,
            },
        )
        .await
        .expect("connecting is lazy");
        store.ping().await.expect_err("refused")
    };
    let ca = std::fs::read(server.ca_path()).expect("CA");
    let e = unreachable(server.url_with_credentials(), None).await;
    assert!(is_outage(&e), "an unknown CA: {e:?}");
    let e = unreachable(server.url(), Some(ca)).await;
    assert!(is_outage(&e), "no ACL user: {e:?}");
}

/// A primary killed under a store with `durability = "replica"`: calls fail for a moment (never
/// hang past the timeout); the promoted replica has no replica of its own, so reservations are
/// refused as unacknowledged until the old primary rejoins as its replica; then the store follows
/// the new topology, and every charge it acknowledged survived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_failover_loses_no_acknowledged_charge() {
    let mut cluster = started(Cluster::start).await;
    let prefix = unique_prefix();
    let s = RedisBackend::on_prefix(&cluster.seed_url(), Durability::Replica, None, prefix.clone()).await;
    let c = [charge("kept", u(1), u(1000), LIFETIME)];
    for n in 0..20 {
        assert_eq!(try_reserve_with(&s, n, &c).await, Ok(Reserved::Charged));
    }
    // The primary holding the account's slot dies.
    let own = cluster.primary_for_key(&format!("{{{prefix}a:{ACCOUNT:#x}}}c:l:kept"));
    let killed_at = Instant::now();
    tokio::task::block_in_place(|| cluster.kill_primary(own));
    let mut n = 100;
    let mut unacknowledged = 0;
    let attempt = |n: u64| {
        let s = &s;
        let c = &c;
        async move {
            let t = Instant::now();
            let r = try_reserve_with(s, n, c).await;
            assert!(
                t.elapsed() < Duration::from_secs(6),
                "a call hung for {:?}",
                t.elapsed()
            );
            r
        }
    };
    let promoted = tokio::task::block_in_place(|| cluster.wait_failover(own));
    // A primary without a replica cannot acknowledge: refused, never counted as durable.
    for _ in 0..3 {
        match attempt(n).await {
            Err(StoreError::Unavailable(m)) if m.contains("no replica acknowledged") => unacknowledged += 1,
            Err(_) => {}
            Ok(r) => panic!("a reservation without a replica was accepted: {r:?}"),
        }
        n += 1;
    }
    assert!(
        unacknowledged > 0,
        "the promoted primary {promoted} refused as unacknowledged"
    );
    tokio::task::block_in_place(|| cluster.restart(own));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match attempt(n).await {
            Ok(Reserved::Charged) => break,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => assert!(
                Instant::now() < deadline,
                "the store did not follow the failover: {e:?}"
            ),
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("reserving again {:?} after the kill", killed_at.elapsed());
    // The 20 acknowledged charges survived; the failed attempts give back what they may have
    // charged (only their own), so exactly 21 remain.
    for m in 100..n {
        s.refund(&ticket(op(m))).await.expect("refund of a failed attempt");
    }
    assert_eq!(used(&s, "kept", LIFETIME, T).await, u(21));
}

async fn try_reserve_with(s: &Store, n: u64, c: &[Charge]) -> Result<Reserved, StoreError> {
    s.reserve(&Reservation {
        op: op(n),
        account: ACCOUNT,
        attempt: attempt_of(op(n)),
        now: T,
        charges: c,
        guards: &[],
    })
    .await
}

/// Sentinel promotes the replica after the primary is killed: a store connected before asks the
/// sentinels again and reserves on the new primary, which has every acknowledged charge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_promotion_is_followed() {
    let mut sentinels = started(Sentinels::start).await;
    let prefix = unique_prefix();
    let durable = RedisBackend::on_prefix(&sentinels.url(), Durability::Replica, None, prefix.clone()).await;
    let primary = RedisBackend::on_prefix(&sentinels.url(), Durability::Primary, None, prefix).await;
    let c = [charge("kept", u(1), u(1000), LIFETIME)];
    for n in 0..10 {
        assert_eq!(try_reserve_with(&durable, n, &c).await, Ok(Reserved::Charged));
    }
    tokio::task::block_in_place(|| sentinels.kill_primary());
    let promoted = tokio::task::block_in_place(|| sentinels.wait_promotion());
    // The promoted primary has no replica: `durability = "replica"` refuses, and never hangs.
    let t = Instant::now();
    let e = try_reserve_with(&durable, 100, &c)
        .await
        .expect_err("no replica to acknowledge");
    assert!(t.elapsed() < Duration::from_secs(6), "{e:?} after {:?}", t.elapsed());
    // `durability = "primary"` reserves on the promoted primary, on top of the 10.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 200;
    loop {
        match try_reserve_with(&primary, n, &c).await {
            Ok(r) => {
                assert_eq!(r, Reserved::Charged);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "not following to {promoted}: {e:?}"),
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    durable
        .refund(&ticket(op(100)))
        .await
        .expect("refund of the refused attempt");
    for m in 200..n {
        primary
            .refund(&ticket(op(m)))
            .await
            .expect("refund of a failed attempt");
    }
    assert_eq!(used(&primary, "kept", LIFETIME, T).await, u(11));
}
