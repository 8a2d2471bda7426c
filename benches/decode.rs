//! Decoding cost of one UserOperation, as opgate decodes each `eth_sendUserOperation`.
//!
//! Three recorded operations (`tests/data/vectors`):
//! - `plain`: `root-ecdsa-deploy-k031`, a root-validator op that deploys a Kernel v3.1 account;
//! - `regular`: `call-equal-regular-k031`, a permission (session key) op in default mode;
//! - `enable`: `call-equal-enable-k031`, a permission op in enable mode that installs a call,
//!   gas, rate-limit and timestamp policy, approved by the root owner's ECDSA signature.
//!
//! Groups:
//! - `decode_op`: the whole per-op decode — parse the RPC JSON, compute the userOpHash, run
//!   `decode_kernel_structure` — everything the op carries, decoded, without verifying an
//!   enable approval's signature;
//! - `decode_op_verified`: the same plus `verify_approval` (Enable digest, ECDSA recovery of the
//!   approver, comparison with the owner): what the proxy does for an enable op of an account
//!   whose owner it knows, and what `explain::decode_op_with` does before building its view;
//! - `decode_kernel`: `decode_kernel_structure` alone on already parsed ops;
//! - `enable_parts`: the pieces of the enable op, to see what dominates.
//!
//! The decoder gets the chain id, the account's Kernel release and the root validator's owner,
//! as a proxy that knows them (from chain state or its permission registry) passes them.
//!
//! Run: `cargo bench --bench decode` (or `scripts/bench-decode.sh`); figures in BENCHMARKS.md.

#[path = "common/alloc.rs"]
mod allocator;
#[path = "common/vector.rs"]
mod vector;

use std::hint::black_box;

use alloy_primitives::{Address, Bytes, B256};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use opgate::decode::ecdsa::recover;
use opgate::decode::enable::{enable_digest, EnableDomain};
use opgate::decode::{decode_kernel_structure, DecodeOptions, KernelDecoded};
use opgate::userop::{parse_user_operation_for, UserOperation};
use serde_json::value::RawValue;

/// The inputs: (label, vector file name).
const INPUTS: [(&str, &str); 3] = [
    ("plain", "root-ecdsa-deploy-k031"),
    ("regular", "call-equal-regular-k031"),
    ("enable", "call-equal-enable-k031"),
];

/// One recorded operation and what the decoder is told about it.
struct Input {
    label: &'static str,
    raw: Box<RawValue>,
    entry_point: Address,
    chain_id: u64,
    opts: DecodeOptions,
    op: UserOperation,
    init_code: Bytes,
}

impl Input {
    fn load(label: &'static str, name: &str) -> Self {
        let vector::Recorded {
            raw,
            entry_point,
            chain_id,
            opts,
        } = vector::load(name).unwrap_or_else(|e| panic!("{e}"));
        let op = parse_user_operation_for(&raw, entry_point).expect("a valid op");
        let init_code = op.init_code();
        let input = Self {
            label,
            raw,
            entry_point,
            chain_id,
            opts,
            op,
            init_code,
        };
        // Measure what the tests check: the op decodes without errors, the enable op approved.
        let mut d = input.decode_parsed(&input.opts);
        d.verify_approval(&input.opts);
        assert!(d.errors.is_empty(), "{name}: {:?}", d.errors);
        if label == "enable" {
            let e = d.enable.as_ref().expect("enable data");
            assert_eq!(
                (e.approved, d.permission.as_ref().map(|p| p.policies.len())),
                (Some(true), Some(4))
            );
        }
        input
    }

    /// `decode_kernel_structure` on the parsed op.
    fn decode_parsed(&self, opts: &DecodeOptions) -> KernelDecoded {
        decode_kernel_structure(
            self.op.sender(),
            self.op.nonce(),
            self.op.call_data(),
            self.op.signature(),
            &self.init_code,
            opts,
        )
    }
}

/// The whole per-op decode: RPC JSON → UserOperation → userOpHash → Kernel decoder, with an
/// enable approval verified when `verify`.
fn decode_op(
    raw: &RawValue,
    entry_point: Address,
    chain_id: u64,
    opts: &DecodeOptions,
    verify: bool,
) -> (B256, KernelDecoded) {
    let op = parse_user_operation_for(raw, entry_point).expect("a valid op");
    let hash = op.hash(entry_point, chain_id).expect("userOpHash");
    let mut decoded = decode_kernel_structure(
        op.sender(),
        op.nonce(),
        op.call_data(),
        op.signature(),
        &op.init_code(),
        opts,
    );
    if verify {
        decoded.verify_approval(opts);
    }
    (hash, decoded)
}

fn inputs() -> Vec<Input> {
    INPUTS.iter().map(|(label, name)| Input::load(label, name)).collect()
}

fn bench_decode_op(c: &mut Criterion) {
    for (group, verify) in [("decode_op", false), ("decode_op_verified", true)] {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(1));
        for input in inputs() {
            g.bench_function(input.label, |b| {
                b.iter(|| {
                    decode_op(
                        black_box(&input.raw),
                        input.entry_point,
                        input.chain_id,
                        &input.opts,
                        verify,
                    )
                })
            });
        }
        g.finish();
    }
}

fn bench_decode_kernel(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_kernel");
    g.throughput(Throughput::Elements(1));
    for input in inputs() {
        g.bench_function(input.label, |b| b.iter(|| black_box(&input).decode_parsed(&input.opts)));
    }
    g.finish();
}

fn bench_enable_parts(c: &mut Criterion) {
    let input = Input::load("enable", "call-equal-enable-k031");
    let structure = input.decode_parsed(&input.opts);
    let mut decoded = structure.clone();
    decoded.verify_approval(&input.opts);
    let enable = decoded.enable.expect("enable data");
    let digest = enable.digest.expect("digest");
    let vid = enable.validation_id.expect("validation id");
    let domain = EnableDomain {
        account: input.op.sender(),
        chain_id: input.chain_id,
        version: enable.kernel_version.expect("release"),
    };
    let mut g = c.benchmark_group("enable_parts");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_json", |b| {
        b.iter(|| parse_user_operation_for(black_box(&input.raw), input.entry_point))
    });
    g.bench_function("user_op_hash", |b| {
        b.iter(|| black_box(&input.op).hash(input.entry_point, input.chain_id))
    });
    g.bench_function("enable_digest", |b| {
        b.iter(|| enable_digest(black_box(&domain), vid, 1, &enable.data))
    });
    g.bench_function("ecdsa_recover", |b| {
        b.iter(|| recover(black_box(&digest), &enable.data.enable_sig))
    });
    g.bench_function("verify_approval", |b| {
        b.iter(|| {
            let mut d = black_box(&structure).clone();
            d.verify_approval(&input.opts);
            d
        })
    });
    g.bench_function("clone_decoded", |b| b.iter(|| black_box(&structure).clone()));
    // The owner known but not the release: each release is tried until one matches.
    let release_unknown = DecodeOptions {
        kernel_version: None,
        ..input.opts.clone()
    };
    let unknown = input.decode_parsed(&release_unknown);
    g.bench_function("verify_approval_release_inferred", |b| {
        b.iter(|| {
            let mut d = black_box(&unknown).clone();
            d.verify_approval(&release_unknown);
            d
        })
    });
    g.finish();
}

criterion_group!(benches, bench_decode_op, bench_decode_kernel, bench_enable_parts);
criterion_main!(benches);
