//! A whole decision from arbitrary bytes: an EntryPoint v0.7 operation carved from the input is
//! decoded and every policy evaluated — the session's own Kernel policies (from its enable data),
//! the guardrails and a set of operator policies with call rules, constraints and transfers.
//! Nothing may panic, whatever the op says.

#![no_main]

use std::sync::OnceLock;

use alloy_primitives::{hex, Address, FixedBytes};
use libfuzzer_sys::fuzz_target;
use opgate::config::{Config, OnError, OperatorPolicy, Overrides};
use opgate::decode::ValidationMode;
use opgate::policy::{evaluate, OpContext, PermissionSource, SessionPermission, Settings};
use opgate::userop::{parse_user_operation_str, EntryPointVersion};

const ENTRY_POINT: Address = Address::new(hex!("0000000071727De22E5E9d8BAf0edAc6f37da032"));

fn policies() -> &'static [OperatorPolicy] {
    static P: OnceLock<Vec<OperatorPolicy>> = OnceLock::new();
    P.get_or_init(|| {
        let toml = r#"
[[chains]]
id = 1
upstreams = ["http://127.0.0.1:9"]
[[policies]]
name = "calls"
[policies.limits]
ops = { count = 5, period = "1h" }
gas_wei = { amount = "1 ether" }
max_cost_per_op = "0.1 ether"
[[policies.calls]]
target = "*"
function = "transfer(address,uint256)"
max_value_per_use = "1"
value_limit = { amount = "10" }
[[policies.calls.constraints]]
param = 1
condition = "lte"
value = "1000"
limit = { amount = "5000", period = "1d" }
[[policies.calls]]
target = "*"
call_type = "delegatecall"
[[policies.transfers]]
token = "native"
max_per_use = "1 ether"
limit = { amount = "2 ether", period = "1d" }
[[policies.transfers]]
token = "0x00000000000000000000000000000000000000aa"
max_per_use = "100"
"#;
        Config::from_toml(toml, &Overrides::default())
            .expect("fuzz config is valid")
            .policies
    })
}

fn hex_of(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 40 {
        return;
    }
    let (head, rest) = data.split_at(40);
    let call_len = u16::from_be_bytes([head[32], head[33]]) as usize % (rest.len() + 1);
    let sig_len = u16::from_be_bytes([head[34], head[35]]) as usize % (rest.len() - call_len + 1);
    let (call_data, rest) = rest.split_at(call_len);
    let (signature, init_code) = rest.split_at(sig_len);
    let sender = Address::repeat_byte(head[37]);
    let (factory, factory_data) = if init_code.len() >= 20 {
        (Some(hex_of(&init_code[..20])), hex_of(&init_code[20..]))
    } else {
        (None, "0x".to_string())
    };
    let op = serde_json::json!({
        "sender": hex_of(sender.as_slice()),
        "nonce": hex_of(&head[..32]),
        "factory": factory,
        "factoryData": factory.as_ref().map(|_| factory_data),
        "callData": hex_of(call_data),
        "callGasLimit": format!("{:#x}", u32::from(head[36]) << 12),
        "verificationGasLimit": "0x30000",
        "preVerificationGas": "0xc350",
        "maxFeePerGas": format!("{:#x}", u64::from(head[38]) << 24),
        "maxPriorityFeePerGas": "0x1",
        "signature": hex_of(signature),
    });
    let Ok(op) = parse_user_operation_str(&op.to_string(), EntryPointVersion::V07) else {
        return;
    };
    let chain_id = 1 + u64::from(head[39] & 3);
    let Ok(hash) = op.hash(ENTRY_POINT, chain_id) else {
        return;
    };
    let decoded = opgate::explain::decode_op_with(
        &op,
        ENTRY_POINT,
        &opgate::decode::DecodeOptions {
            chain_id: Some(chain_id),
            ..Default::default()
        },
    );
    let Some(k) = decoded.detail.as_ref() else { return };
    let selectors: Vec<FixedBytes<4>> = k.selector_data.iter().map(|s| s.selector).collect();
    let session = match (&k.nonce, &k.permission) {
        (Some(n), Some(p)) if n.mode == ValidationMode::Enable => Some(SessionPermission {
            id: n.permission_id.unwrap_or_default(),
            permission: p,
            selectors: &selectors,
            source: PermissionSource::Enable,
            hook: k.enable.as_ref().map(|e| e.data.hook),
            enable_nonce: None,
        }),
        _ => None,
    };
    let delegated = opgate::policy::delegated_calls(
        k.calls.as_ref().map(|c| c.calls.as_slice()).unwrap_or_default(),
        &[],
        chain_id,
    );
    let ctx = OpContext {
        chain_id,
        entry_point: ENTRY_POINT,
        op: &op,
        hash,
        kernel: Some(k),
        calls: k.calls.as_ref(),
        session,
        simulation: None,
        account: None,
        previous: None,
        registered: None,
        node: Default::default(),
        tenant: None,
        delegated: &delegated,
        now: u64::from_be_bytes(head[..8].try_into().unwrap_or_default()) >> 24,
    };
    for unknown in [OnError::Reject, OnError::Allow] {
        let ev = evaluate(
            &ctx,
            &Settings {
                policies: policies(),
                unknown_permission: unknown,
                store_on_error: OnError::Reject,
                unknown_validator: unknown,
            },
        );
        let _ = serde_json::to_string(&ev.verdicts);
        let _ = ev.into_permit();
    }
});
