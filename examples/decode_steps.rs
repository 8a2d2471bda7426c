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
#[path = "../benches/common/vector.rs"]
mod vector;

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use opgate::decode::decode_kernel_structure;
use opgate::userop::parse_user_operation_for;
use vector::Recorded;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(step), Some(Ok(n))) = (args.first(), args.get(1).map(|n| n.parse::<u64>())) else {
        eprintln!("usage: decode_steps parse|hash|decode|op|none N [VECTOR]");
        return ExitCode::FAILURE;
    };
    let name = args.get(2).map_or("call-equal-enable-k031", String::as_str);
    let Recorded {
        raw,
        entry_point,
        chain_id,
        opts,
    } = match vector::load(name) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
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
