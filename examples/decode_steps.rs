//! Runs one step of the per-op decode `N` times, for counting instructions (valgrind, `perf
//! stat`) or timing a step on its own: `scripts/bench-decode.sh --instructions` drives it.
//!
//! `cargo run --release --example decode_steps -- STEP N [VECTOR]`, where `STEP` is
//! - `parse`: the RPC JSON op read into a `UserOperation` (`parse_user_operation_for`);
//! - `hash`: the userOpHash of the parsed op;
//! - `decode`: `decode_kernel_structure` on the parsed op;
//! - `op`: all three, as `benches/decode.rs`'s `decode_op` group runs them;
//! - `none`: nothing (the loading alone);
//!
//! and `VECTOR` names a file of `tests/data/vectors` (default: the enable-mode op the decode
//! bench uses). The time per iteration goes to stderr.

#[path = "../benches/common/alloc.rs"]
mod allocator;

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use alloy_primitives::Address;
use opgate::decode::enable::KernelVersion;
use opgate::decode::{decode_kernel_structure, DecodeOptions};
use opgate::userop::parse_user_operation_for;
use serde_json::value::RawValue;
use serde_json::Value;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(step), Some(Ok(n))) = (args.first(), args.get(1).map(|n| n.parse::<u64>())) else {
        eprintln!("usage: decode_steps parse|hash|decode|op|none N [VECTOR]");
        return ExitCode::FAILURE;
    };
    let name = args.get(2).map_or("call-equal-enable-k031", String::as_str);
    let path = format!("{}/tests/data/vectors/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let vector: Value = match std::fs::read_to_string(&path).map(|t| serde_json::from_str(&t)) {
        Ok(Ok(v)) => v,
        _ => {
            eprintln!("{path}: not a readable vector");
            return ExitCode::FAILURE;
        }
    };
    let raw: Box<RawValue> = serde_json::value::to_raw_value(&vector["userOperation"]).expect("an op");
    let entry_point: Address = vector["entryPoint"]["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("entryPoint");
    let chain_id = vector["chainId"].as_u64().expect("chainId");
    let opts = DecodeOptions {
        chain_id: Some(chain_id),
        kernel_version: vector["kernelVersion"].as_str().and_then(KernelVersion::parse),
        root_owner: vector["rootValidator"]["owner"].as_str().and_then(|o| o.parse().ok()),
        ..Default::default()
    };
    let op = parse_user_operation_for(&raw, entry_point).expect("a valid op");
    let init_code = op.init_code();
    let started = Instant::now();
    for _ in 0..n {
        match step.as_str() {
            "parse" => {
                black_box(parse_user_operation_for(black_box(&raw), entry_point).ok());
            }
            "hash" => {
                black_box(black_box(&op).hash(entry_point, chain_id).ok());
            }
            "decode" => {
                black_box(decode_kernel_structure(
                    op.sender(),
                    op.nonce(),
                    op.call_data(),
                    op.signature(),
                    &init_code,
                    black_box(&opts),
                ));
            }
            "op" => {
                let op = parse_user_operation_for(black_box(&raw), entry_point).expect("a valid op");
                let hash = op.hash(entry_point, chain_id).ok();
                let decoded = decode_kernel_structure(
                    op.sender(),
                    op.nonce(),
                    op.call_data(),
                    op.signature(),
                    &op.init_code(),
                    &opts,
                );
                black_box((hash, decoded));
            }
            "none" => {}
            other => {
                eprintln!("unknown step {other:?}");
                return ExitCode::FAILURE;
            }
        }
    }
    let per_op = started.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64;
    eprintln!("{step} {name}: {per_op:.3} µs per iteration");
    ExitCode::SUCCESS
}
