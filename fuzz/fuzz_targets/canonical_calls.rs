//! Round trip through the canonical encoder: a batch of calls is encoded as `abi.encode` writes
//! it inside Kernel `execute`, then changed at fuzzer-chosen bytes. Whatever the change, the
//! decoder either flags the bytes as not canonical (so opgate refuses them) or reads exactly the
//! calls that re-encode to the same bytes: there is never a second reading of what it accepts.

#![no_main]

use alloy_primitives::{Address, U256};
use libfuzzer_sys::fuzz_target;
use opgate::decode::{decode_calls, CallDataFormat, ExecCallType};

const EXECUTE: [u8; 4] = [0xe9, 0xae, 0x5c, 0x53];

fn word(n: usize) -> [u8; 32] {
    U256::from(n).to_be_bytes()
}

/// `abi.encode(Execution[])` as Solidity writes it.
fn encode_batch(calls: &[(Address, U256, Vec<u8>)]) -> Vec<u8> {
    let mut tails: Vec<Vec<u8>> = Vec::with_capacity(calls.len());
    for (target, value, data) in calls {
        let mut t = [0u8; 12].to_vec();
        t.extend_from_slice(target.as_slice());
        t.extend(value.to_be_bytes::<32>());
        t.extend(word(0x60));
        t.extend(word(data.len()));
        t.extend_from_slice(data);
        t.resize(t.len() + (32 - data.len() % 32) % 32, 0);
        tails.push(t);
    }
    let mut out = word(0x20).to_vec();
    out.extend(word(calls.len()));
    let mut offset = 32 * calls.len();
    for t in &tails {
        out.extend(word(offset));
        offset += t.len();
    }
    for t in tails {
        out.extend(t);
    }
    out
}

/// `execute(bytes32 mode, bytes executionCalldata)` in batch mode.
fn execute(exec: &[u8]) -> Vec<u8> {
    let mut out = EXECUTE.to_vec();
    let mut mode = [0u8; 32];
    mode[0] = 0x01;
    out.extend(mode);
    out.extend(word(0x40));
    out.extend(word(exec.len()));
    out.extend_from_slice(exec);
    out.resize(out.len() + (32 - exec.len() % 32) % 32, 0);
    out
}

fn calls_from(data: &[u8]) -> (Vec<(Address, U256, Vec<u8>)>, &[u8]) {
    let Some((&n, mut rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let mut calls = Vec::new();
    for _ in 0..n % 4 {
        let [t, v, len, tail @ ..] = rest else { break };
        let len = usize::from(*len % 72).min(tail.len());
        calls.push((Address::with_last_byte(*t), U256::from(*v), tail[..len].to_vec()));
        rest = &tail[len..];
    }
    (calls, rest)
}

fuzz_target!(|data: &[u8]| {
    let (calls, mutations) = calls_from(data);
    let original = execute(&encode_batch(&calls));
    let d = decode_calls(&original).expect("the canonical encoding decodes");
    assert_eq!(d.non_canonical, None, "the canonical encoding is flagged");
    let read: Vec<_> = d.calls.iter().map(|c| (c.target, c.value, c.data.to_vec())).collect();
    assert_eq!(read, calls, "the canonical encoding reads other calls");

    // Up to 8 changes: (position, new byte), and an optional cut or extension of the tail.
    let mut m = original;
    for change in mutations.chunks_exact(3).take(8) {
        let at = usize::from(u16::from_be_bytes([change[0], change[1]]));
        match at {
            _ if at < m.len() => m[at] = change[2],
            _ if at % 7 == 0 => m.truncate(m.len().saturating_sub(usize::from(change[2]))),
            _ => m.extend(std::iter::repeat_n(change[2], at % 64)),
        }
    }
    let Ok(d) = decode_calls(&m) else { return };
    if d.non_canonical.is_some()
        || d.format != CallDataFormat::KernelExecute
        || d.call_type != Some(ExecCallType::Batch)
    {
        return;
    }
    // Accepted as canonical: the executionCalldata the chain reads re-encodes to itself.
    let len = usize::try_from(U256::from_be_slice(&m[68..100])).expect("length checked by the decoder");
    let exec = &m[100..100 + len];
    let read: Vec<_> = d.calls.iter().map(|c| (c.target, c.value, c.data.to_vec())).collect();
    assert_eq!(
        encode_batch(&read),
        exec,
        "bytes accepted as canonical have a second reading"
    );
});
