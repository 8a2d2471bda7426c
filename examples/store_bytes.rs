//! Bytes per entry of the memory store, measured as the process's resident memory grows while
//! the store fills: `scripts/bench-store.sh` drives it (see BENCHMARKS.md, "Memory store").
//!
//! `cargo run --release --example store_bytes -- KIND [N]` fills a fresh store in a fresh process
//! (so memory freed by another run cannot be reused) and prints one table row; `KIND` is one of
//! (`N` defaults to 200,000):
//! - `ops`: unique ops charging one shared lifetime counter (one new op record each, the
//!   dedupe entry a day-long `dedupe_ttl` keeps);
//! - `sessions`: unique ops of unique sessions, each charging two counters of its own (a
//!   GasPolicy and a RateLimitPolicy mirror) and one per-day operator counter: one op record and
//!   three counters each, what a stream of first ops of new sessions adds;
//! - `registry`: `N / 4` permission entries of the size an enable op writes (about 1.4 KB of JSON each).
//!
//! Resident memory is read from `/proc/self/statm`; the allocator is the binary's (mimalloc).

#[path = "../benches/common/alloc.rs"]
mod allocator;

use std::process::ExitCode;
use std::time::Duration;

use alloy_primitives::{Address, B256, U256};
use opgate::store::memory::MemoryStore;
use opgate::store::{Charge, Reservation, Reserved, Scope, Window};

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn charge(counter: String, window: Window) -> Charge {
    Charge {
        counter,
        scope: Scope::Account,
        amount: U256::from(21_000u64) * U256::from(1_000_000_000u64),
        limit: U256::MAX,
        window,
    }
}

async fn run(what: &str, n: u64, per_op: impl Fn(u64) -> Vec<Charge>, entries_per_op: u64) -> Result<(), String> {
    let store = MemoryStore::bounded(Duration::from_secs(86_400), usize::MAX);
    let now = 1_795_284_600;
    let before = resident_bytes();
    for i in 0..n {
        let charges = per_op(i);
        let r = Reservation {
            op: B256::from(U256::from(i) + U256::from(1u64 << 40)),
            account: Address::with_last_byte(1),
            attempt: i + 1,
            now,
            charges: &charges,
            guards: &[],
        };
        match store.reserve(&r).await {
            Ok(Reserved::Charged) => {}
            other => return Err(format!("{what}: op {i}: {other:?}")),
        }
        store.commit(&r.ticket()).await.map_err(|e| e.to_string())?;
    }
    let grown = resident_bytes().saturating_sub(before);
    let entries = store.entries() as u64;
    if entries < n * entries_per_op {
        return Err(format!("{what}: {entries} entries, expected {}", n * entries_per_op));
    }
    println!(
        "| {what} | {n} | {entries} | {:.1} | {:.0} |",
        grown as f64 / 1_048_576.0,
        grown as f64 / entries as f64
    );
    Ok(())
}

async fn registry(n: u64) -> Result<(), String> {
    let store = MemoryStore::bounded(Duration::from_secs(86_400), usize::MAX);
    let value = format!("{{\"validatorData\":\"0x{}\",\"selectors\":[\"0xe9ae5c53\"],\"source\":\"enable\",\"learnedAt\":1795284600,\"hook\":\"0x0000000000000000000000000000000000000000\",\"enableNonce\":1}}", "ab".repeat(640));
    let before = resident_bytes();
    for i in 0..n {
        let key = format!("perm:31337:0x{:040x}:0x{:08x}", i, i as u32);
        store.put_permission(&key, &value).await.map_err(|e| e.to_string())?;
    }
    let grown = resident_bytes().saturating_sub(before);
    let entries = store.entries() as u64;
    println!(
        "| registry ({} B of JSON each) | {n} | {entries} | {:.1} | {:.0} |",
        value.len(),
        grown as f64 / 1_048_576.0,
        grown as f64 / entries as f64
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: Option<u64> = match args.get(1).map(|a| a.parse()) {
        None => Some(200_000),
        Some(Ok(n)) if n > 0 => Some(n),
        _ => None,
    };
    let (Some(kind), Some(n)) = (args.first().map(String::as_str), n) else {
        eprintln!("usage: store_bytes ops|sessions|registry [N]   (N > 0 reservations, default 200000)");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("store_bytes: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match kind {
            "ops" => {
                run(
                    "op records (one shared counter)",
                    n,
                    |_| vec![charge("shared".into(), Window::Lifetime)],
                    1,
                )
                .await
            }
            "sessions" => {
                run(
                    "session ops (op record + 3 counters)",
                    n,
                    |i| {
                        let session = format!("k:31337:0x{i:040x}:0xc0dec0de");
                        vec![
                            charge(format!("{session}:1:gas"), Window::Lifetime),
                            charge(
                                format!("{session}:2:rate"),
                                Window::Schedule {
                                    start_at: 0,
                                    interval: 0,
                                },
                            ),
                            charge(format!("op:bot-budget:{session}"), Window::Fixed { period: 86_400 }),
                        ]
                    },
                    4,
                )
                .await
            }
            "registry" => registry(n / 4).await,
            other => Err(format!("unknown kind `{other}` (ops, sessions, registry)")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("store_bytes: {e}");
            ExitCode::FAILURE
        }
    }
}
