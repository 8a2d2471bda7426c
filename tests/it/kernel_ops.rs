//! Kernel v3 operations built and signed in tests, and opgate in front of a fake bundler to send
//! them through: the builders the never-tricked and lifecycle suites share.
//!
//! Addresses, selectors and layouts come from the spec (`kernel-v3.md` §2–§6), written out here
//! rather than taken from opgate's own constants; opgate's code is used only to compute the
//! userOpHash and the Enable digest (its hashing has its own vector tests).

use crate::fixtures::sign;
use crate::support::{call, redis_cleanup, FakeBundler, Opgate, Reply};
use alloy_primitives::{address, eip191_hash_message, hex, keccak256, Address, Bytes, FixedBytes, B256, U256};
use alloy_sol_types::{sol, SolValue};
use k256::ecdsa::SigningKey;
use opgate::clock::ManualClock;
use opgate::config::{Config, Overrides};
use opgate::decode::enable::{enable_digest, EnableData, EnableDomain, KernelVersion};
use opgate::userop::{parse_user_operation_value, EntryPointVersion, UserOperation};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

// ---------------------------------------------------------------------------------------------
// Constants (spec §1.1, §3, §4.5, §6)
// ---------------------------------------------------------------------------------------------

pub(crate) const ENTRY_POINT: Address = address!("0000000071727De22E5E9d8BAf0edAc6f37da032");
pub(crate) const META_FACTORY: Address = address!("d703aaE79538628d27099B8c4f621bE4CCd142d5");
pub(crate) const ECDSA_VALIDATOR_V3_0: Address = address!("8104e3Ad430EA6d354d013A6789fDFc71E671c43");
pub(crate) const ECDSA_VALIDATOR: Address = address!("845ADb2C711129d4f3966735eD98a9F09fC4cE57");
pub(crate) const ECDSA_SIGNER: Address = address!("6A6F069E2a08c2468e7724Ab3250CdBFBA14D4FF");
pub(crate) const CALL_POLICY_0_0_4: Address = address!("9a52283276A0ec8740DF50bF01B28A80D880eaf2");
pub(crate) const GAS_POLICY: Address = address!("aeFC5AbC67FfD258abD0A3E54f65E70326F84b23");
pub(crate) const SUDO_POLICY: Address = address!("67b436caD8a6D025DF6C82C5BB43fbF11fC5B9B7");
pub(crate) const TIMESTAMP_POLICY: Address = address!("B9f8f524bE6EcD8C945b1b87f9ae5C192FdCE20F");

/// An ERC-20 token, the session's recipient, someone else, a router (delegate), a hook contract,
/// a paymaster and a validator nobody installed: plain addresses, none of them a Kernel module.
pub(crate) const TOKEN: Address = address!("7777777777777777777777777777777777777777");
pub(crate) const RECIPIENT: Address = address!("1111111111111111111111111111111111111111");
pub(crate) const STRANGER: Address = address!("2222222222222222222222222222222222222222");
pub(crate) const ROUTER: Address = address!("CA7814dd41C717eefd3fF9fDCbabaE10Dc96a539");
pub(crate) const HOOK: Address = address!("4444444444444444444444444444444444444444");
pub(crate) const PAYMASTER: Address = address!("5555555555555555555555555555555555555555");
pub(crate) const UNKNOWN_VALIDATOR: Address = address!("6666666666666666666666666666666666666666");

pub(crate) const CHAIN: u64 = 31337;
pub(crate) const OTHER_CHAIN: u64 = 31338;
/// The opgate clock (2025-06-15).
pub(crate) const NOW: u64 = 1_750_000_000;
/// What the fake bundler answers to every `eth_sendUserOperation`.
pub(crate) const BUNDLER_HASH: &str = "0x5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";
/// `keccak("kernel.replayable.signature")` (spec §2.3).
pub(crate) const REPLAYABLE_MAGIC: B256 =
    alloy_primitives::b256!("0555ad2729e8da1777a4e5020806f8bf7601c3db6bfe402f410a34958363a95a");
/// The secp256k1 group order.
pub(crate) const SECP256K1_N: U256 =
    alloy_primitives::uint!(0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141_U256);

pub(crate) const VERSIONS: [KernelVersion; 4] = KernelVersion::ALL;

/// `keccak(signature)[0:4]`.
pub(crate) fn selector(signature: &str) -> [u8; 4] {
    keccak256(signature.as_bytes())[..4].try_into().unwrap()
}

pub(crate) fn execute_selector() -> [u8; 4] {
    selector("execute(bytes32,bytes)")
}

/// `executeUserOp(...)`: the marker a hooked validation's call data starts with (spec §1.5).
pub(crate) const EXECUTE_USER_OP: [u8; 4] = [0x8d, 0xd7, 0x71, 0x2f];

sol! {
    /// CallPolicy ≥ 0.0.2 `ParamRule`.
    struct ParamRule {
        uint8 condition;
        uint64 offset;
        bytes32[] params;
    }
    /// CallPolicy ≥ 0.0.2 `Permission`.
    struct CallPermission {
        bytes1 callType;
        address target;
        bytes4 selector;
        uint256 valueLimit;
        ParamRule[] rules;
    }
}

pub(crate) const EQUAL: u8 = 0;
pub(crate) const LESS_THAN_OR_EQUAL: u8 = 4;

// ---------------------------------------------------------------------------------------------
// Kernel releases (spec §2.5, §6)
// ---------------------------------------------------------------------------------------------

pub(crate) fn kernel_factory(v: KernelVersion) -> Address {
    match v {
        KernelVersion::V3_0 => address!("6723b44Abeec4E71eBE3232BD5B455805baDD22f"),
        KernelVersion::V3_1 => address!("aac5D4240AF87249B3f71BC8E4A2cae074A3E419"),
        KernelVersion::V3_2 => address!("7a1dBAB750f12a90EB1B60D2Ae3aD17D4D81EfFe"),
        KernelVersion::V3_3 => address!("2577507b78c2008Ff367261CB6285d44ba5eF2E9"),
    }
}

pub(crate) fn root_ecdsa_validator(v: KernelVersion) -> Address {
    if v == KernelVersion::V3_0 {
        ECDSA_VALIDATOR_V3_0
    } else {
        ECDSA_VALIDATOR
    }
}

pub(crate) fn label(v: KernelVersion) -> &'static str {
    match v {
        KernelVersion::V3_0 => "v3.0",
        KernelVersion::V3_1 => "v3.1",
        KernelVersion::V3_2 => "v3.2",
        KernelVersion::V3_3 => "v3.3",
    }
}

// ---------------------------------------------------------------------------------------------
// ABI pieces
// ---------------------------------------------------------------------------------------------

pub(crate) fn word(n: u64) -> [u8; 32] {
    U256::from(n).to_be_bytes()
}

/// `transfer(address,uint256)`.
pub(crate) fn transfer(to: Address, amount: u64) -> Vec<u8> {
    [
        &selector("transfer(address,uint256)")[..],
        &(to, U256::from(amount)).abi_encode_params(),
    ]
    .concat()
}

/// `forward(address,uint256,bytes)`: the router makes this call from the account's context.
pub(crate) fn forward(target: Address, value: u64, data: &[u8]) -> Vec<u8> {
    [
        &selector("forward(address,uint256,bytes)")[..],
        &(target, U256::from(value), Bytes::copy_from_slice(data)).abi_encode_params(),
    ]
    .concat()
}

/// An `execute` mode word: call type, exec type, the rest zero (spec §3.1).
pub(crate) fn mode(call_type: u8, exec_type: u8) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0] = call_type;
    m[1] = exec_type;
    m
}

pub(crate) const SINGLE: u8 = 0x00;
pub(crate) const BATCH: u8 = 0x01;
pub(crate) const DELEGATECALL: u8 = 0xFF;

/// `execute(bytes32 mode, bytes executionCalldata)`, canonically encoded.
pub(crate) fn execute(mode: [u8; 32], execution: &[u8]) -> Vec<u8> {
    [
        &execute_selector()[..],
        &(B256::from(mode), Bytes::copy_from_slice(execution)).abi_encode_params(),
    ]
    .concat()
}

/// Single execution: `target(20) ‖ value(32) ‖ data`.
pub(crate) fn single(target: Address, value: u64, data: &[u8]) -> Vec<u8> {
    [target.as_slice(), &word(value), data].concat()
}

/// Delegatecall execution: `target(20) ‖ data` (no value).
pub(crate) fn delegate(target: Address, data: &[u8]) -> Vec<u8> {
    [target.as_slice(), data].concat()
}

/// Batch execution: `abi.encode(Execution[])`.
pub(crate) fn batch(calls: &[(Address, u64, Vec<u8>)]) -> Vec<u8> {
    calls
        .iter()
        .map(|(t, v, d)| (*t, U256::from(*v), Bytes::copy_from_slice(d)))
        .collect::<Vec<_>>()
        .abi_encode()
}

/// `execute(single, target, value, data)`.
pub(crate) fn execute_single(target: Address, value: u64, data: &[u8]) -> Vec<u8> {
    execute(mode(SINGLE, 0), &single(target, value, data))
}

/// The call a session key makes in the ordinary ops: a small token transfer to the recipient.
pub(crate) fn pay(amount: u64) -> Vec<u8> {
    execute_single(TOKEN, 0, &transfer(RECIPIENT, amount))
}

/// `abi.encode(Execution)` of one tuple, on its own (its head's bytes offset relative to it).
pub(crate) fn execution_tuple(target: Address, value: u64, data: &[u8]) -> Vec<u8> {
    (target, U256::from(value), Bytes::copy_from_slice(data)).abi_encode_params()
}

// ---------------------------------------------------------------------------------------------
// Permissions (spec §4.2, §4.5)
// ---------------------------------------------------------------------------------------------

/// What the owner's enable approval installs: policies, a hook, one granted selector.
#[derive(Clone)]
pub(crate) struct Grant {
    /// `flag(2) ‖ policy(20) ‖ initData` each.
    pub(crate) policies: Vec<Vec<u8>>,
    pub(crate) hook: Address,
    pub(crate) selector: [u8; 4],
}

impl Grant {
    /// These policies, no hook, `execute` granted.
    pub(crate) fn of(policies: Vec<Vec<u8>>) -> Self {
        Self {
            policies,
            hook: Address::ZERO,
            selector: execute_selector(),
        }
    }

    /// `abi.encode(bytes[] [policies…, permissionFlag ‖ ECDSASigner ‖ sessionKey])`.
    pub(crate) fn validator_data(&self, session_key: Address) -> Bytes {
        let mut entries: Vec<Bytes> = self.policies.iter().map(|p| Bytes::copy_from_slice(p)).collect();
        entries.push(
            [&[0u8, 0][..], ECDSA_SIGNER.as_slice(), session_key.as_slice()]
                .concat()
                .into(),
        );
        entries.abi_encode().into()
    }

    /// `hookData`: `0xff` (install the hook) for a real hook, else empty.
    pub(crate) fn hook_data(&self) -> Bytes {
        if self.hook == Address::ZERO {
            Bytes::new()
        } else {
            Bytes::from_static(&[0xff])
        }
    }
}

pub(crate) fn policy(flag: u16, address: Address, init_data: &[u8]) -> Vec<u8> {
    [&flag.to_be_bytes()[..], address.as_slice(), init_data].concat()
}

/// SudoPolicy: the session may do anything the guardrails let through.
pub(crate) fn sudo() -> Vec<u8> {
    policy(0, SUDO_POLICY, &[])
}

/// TimestampPolicy `abi.encode(uint48 validAfter, uint48 validUntil)`.
pub(crate) fn timestamp(after: u64, until: u64) -> Vec<u8> {
    policy(
        0,
        TIMESTAMP_POLICY,
        &(U256::from(after), U256::from(until)).abi_encode(),
    )
}

/// GasPolicy `abi.encode(uint128 allowed, bool enforcePaymaster, address allowedPaymaster)`.
pub(crate) fn gas_policy(allowed: u128, enforce_paymaster: bool, allowed_paymaster: Address) -> Vec<u8> {
    policy(
        0,
        GAS_POLICY,
        &(U256::from(allowed), enforce_paymaster, allowed_paymaster).abi_encode(),
    )
}

/// CallPolicy 0.0.4 `abi.encode(Permission[])` under `flag`.
pub(crate) fn call_policy(flag: u16, permissions: Vec<CallPermission>) -> Vec<u8> {
    policy(flag, CALL_POLICY_0_0_4, &permissions.abi_encode())
}

/// CALL `transfer(to == RECIPIENT, amount <= 100)` on the token.
pub(crate) fn transfer_to_recipient_at_most_100() -> CallPermission {
    CallPermission {
        callType: FixedBytes([0x00]),
        target: TOKEN,
        selector: FixedBytes(selector("transfer(address,uint256)")),
        valueLimit: U256::ZERO,
        rules: vec![
            ParamRule {
                condition: EQUAL,
                offset: 0,
                params: vec![RECIPIENT.into_word()],
            },
            ParamRule {
                condition: LESS_THAN_OR_EQUAL,
                offset: 32,
                params: vec![B256::from(U256::from(100))],
            },
        ],
    }
}

/// DELEGATECALL the router's `forward(address,uint256,bytes)`.
pub(crate) fn delegatecall_router() -> CallPermission {
    CallPermission {
        callType: FixedBytes([0xFF]),
        target: ROUTER,
        selector: FixedBytes(selector("forward(address,uint256,bytes)")),
        valueLimit: U256::ZERO,
        rules: vec![],
    }
}

// ---------------------------------------------------------------------------------------------
// Accounts and operations
// ---------------------------------------------------------------------------------------------

/// A Kernel account: its release, address, root owner key and one session key with its
/// permission id.
pub(crate) struct Account {
    pub(crate) version: KernelVersion,
    pub(crate) address: Address,
    pub(crate) owner: SigningKey,
    pub(crate) session: SigningKey,
    pub(crate) pid: [u8; 4],
}

impl Account {
    /// A fresh account; `case` keeps the accounts of one test apart.
    pub(crate) fn new(version: KernelVersion, case: u8) -> Self {
        let v = VERSIONS.iter().position(|x| *x == version).unwrap() as u8;
        let seed = keccak256([b"never-tricked".as_slice(), &[v, case]].concat());
        Self {
            version,
            address: Address::from_slice(&seed[12..]),
            owner: SigningKey::from_slice(&[0x10 + v; 32]).unwrap(),
            session: SigningKey::from_slice(&[0x20 + case; 32]).unwrap(),
            pid: [0xc0, 0xde, v, case],
        }
    }

    /// Another session key of the same account, under another permission id.
    pub(crate) fn another_session(&self, case: u8) -> Self {
        Self {
            address: self.address,
            owner: self.owner.clone(),
            ..Self::new(self.version, case)
        }
    }

    pub(crate) fn owner_address(&self) -> Address {
        Address::from_private_key(&self.owner)
    }

    pub(crate) fn session_address(&self) -> Address {
        Address::from_private_key(&self.session)
    }

    /// The permission's ValidationId: `0x02 ‖ pid ‖ 0^16`.
    pub(crate) fn validation_id(&self) -> FixedBytes<21> {
        let mut vid = [0u8; 21];
        vid[0] = 0x02;
        vid[1..5].copy_from_slice(&self.pid);
        FixedBytes(vid)
    }

    /// `deployWithFactory(kernelFactory, initialize(0x01 ‖ ECDSAValidator, 0, owner, "", [[]]), 0)`.
    pub(crate) fn factory_data(&self) -> Bytes {
        self.factory_data_with(Vec::new())
    }

    /// [`Account::factory_data`] with `initConfig` self-calls (v3.1+).
    pub(crate) fn factory_data_with(&self, init_config: Vec<Bytes>) -> Bytes {
        let mut root = [0u8; 21];
        root[0] = 0x01;
        root[1..].copy_from_slice(root_ecdsa_validator(self.version).as_slice());
        let root = FixedBytes(root);
        let owner = Bytes::copy_from_slice(self.owner_address().as_slice());
        let initialize = if self.version == KernelVersion::V3_0 {
            let args = (root, Address::ZERO, owner, Bytes::new()).abi_encode_params();
            [&selector("initialize(bytes21,address,bytes,bytes)")[..], &args].concat()
        } else {
            let args = (root, Address::ZERO, owner, Bytes::new(), init_config).abi_encode_params();
            [&selector("initialize(bytes21,address,bytes,bytes,bytes[])")[..], &args].concat()
        };
        let args = (kernel_factory(self.version), Bytes::from(initialize), B256::ZERO).abi_encode_params();
        [&selector("deployWithFactory(address,bytes,bytes32)")[..], &args]
            .concat()
            .into()
    }
}

/// A nonce from its 32 bytes (spec §2.1).
pub(crate) fn nonce(bytes: [u8; 32]) -> U256 {
    U256::from_be_bytes(bytes)
}

/// `mode ‖ 0x02 ‖ pid ‖ 0^16 ‖ lane 0 ‖ seq`.
pub(crate) fn permission_nonce(mode: u8, pid: [u8; 4], seq: u64) -> U256 {
    let mut n = [0u8; 32];
    n[0] = mode;
    n[1] = 0x02;
    n[2..6].copy_from_slice(&pid);
    n[24..].copy_from_slice(&seq.to_be_bytes());
    nonce(n)
}

pub(crate) const ENABLE: u8 = 0x01;
pub(crate) const DEFAULT: u8 = 0x00;

/// A v0.7 UserOperation being built.
#[derive(Clone)]
pub(crate) struct Op {
    pub(crate) sender: Address,
    pub(crate) nonce: U256,
    /// `factoryData` for the meta factory, when the op deploys the account.
    pub(crate) factory_data: Option<Bytes>,
    pub(crate) call_data: Bytes,
    pub(crate) call_gas: u64,
    pub(crate) verification_gas: u64,
    pub(crate) pre_verification_gas: u64,
    pub(crate) max_fee: u64,
    /// `(paymaster, verification gas limit, post-op gas limit)`.
    pub(crate) paymaster: Option<(Address, u64, u64)>,
    pub(crate) signature: Bytes,
}

pub(crate) fn quantity(n: impl std::fmt::LowerHex) -> String {
    format!("{n:#x}")
}

impl Op {
    pub(crate) fn new(sender: Address, nonce: U256, call_data: Vec<u8>) -> Self {
        Self {
            sender,
            nonce,
            factory_data: None,
            call_data: call_data.into(),
            call_gas: 100_000,
            verification_gas: 100_000,
            pre_verification_gas: 50_000,
            max_fee: 1_000_000_000,
            paymaster: None,
            signature: Bytes::new(),
        }
    }

    /// The `eth_sendUserOperation` params[0] object.
    pub(crate) fn json(&self) -> Value {
        let mut o = json!({
            "sender": self.sender.to_string(),
            "nonce": quantity(self.nonce),
            "callData": hex::encode_prefixed(&self.call_data),
            "callGasLimit": quantity(self.call_gas),
            "verificationGasLimit": quantity(self.verification_gas),
            "preVerificationGas": quantity(self.pre_verification_gas),
            "maxFeePerGas": quantity(self.max_fee),
            "maxPriorityFeePerGas": quantity(self.max_fee),
            "signature": hex::encode_prefixed(&self.signature),
        });
        if let Some(data) = &self.factory_data {
            o["factory"] = json!(META_FACTORY.to_string());
            o["factoryData"] = json!(hex::encode_prefixed(data));
        }
        if let Some((pm, verification, post_op)) = self.paymaster {
            o["paymaster"] = json!(pm.to_string());
            o["paymasterVerificationGasLimit"] = json!(quantity(verification));
            o["paymasterPostOpGasLimit"] = json!(quantity(post_op));
            o["paymasterData"] = json!("0x");
        }
        o
    }

    pub(crate) fn parsed(&self) -> UserOperation {
        parse_user_operation_value(&self.json(), EntryPointVersion::V07).expect("the built op parses")
    }

    /// The EntryPoint v0.7 userOpHash on `chain` (the signature plays no part).
    pub(crate) fn hash(&self, chain: u64) -> B256 {
        self.parsed().hash(ENTRY_POINT, chain).unwrap()
    }

    /// Kernel ≥ v3.2's chain-agnostic hash (chain id 0).
    pub(crate) fn replayable_hash(&self) -> B256 {
        self.parsed().replayable_hash(ENTRY_POINT).unwrap()
    }

    pub(crate) fn params(&self) -> String {
        json!([self.json(), ENTRY_POINT.to_string()]).to_string()
    }

    pub(crate) fn with_signature(mut self, signature: Vec<u8>) -> Self {
        self.signature = signature.into();
        self
    }
}

/// ECDSA over EIP-191(hash), as the SDK's signers sign userOpHashes.
pub(crate) fn sign_191(key: &SigningKey, hash: B256) -> [u8; 65] {
    sign(key, &eip191_hash_message(hash.as_slice()))
}

/// EIP-2098 compact form of a 65-byte signature: `r ‖ (yParity << 255 | s)`.
pub(crate) fn compact(sig: &[u8; 65]) -> Vec<u8> {
    let mut out = sig[..64].to_vec();
    if sig[64] == 28 {
        out[32] |= 0x80;
    }
    out
}

/// The other signature of the same key over the same hash: `r ‖ n − s ‖ v flipped`.
pub(crate) fn high_s_twin(sig: &[u8; 65]) -> Vec<u8> {
    let s = U256::from_be_slice(&sig[32..64]);
    let twin = SECP256K1_N - s;
    [
        &sig[..32],
        &twin.to_be_bytes::<32>()[..],
        &[if sig[64] == 27 { 28 } else { 27 }],
    ]
    .concat()
}

/// How an enable-mode op is built.
#[derive(Clone, Copy)]
pub(crate) struct EnableOpts {
    pub(crate) chain: u64,
    /// The op also deploys the account (its first op).
    pub(crate) deploy: bool,
    /// Chain-agnostic (Kernel ≥ v3.2): magic prefix, chain id 0 in the digest and the userOpHash.
    pub(crate) replayable: bool,
    /// The Enable digest's `nonce` (1 right after deployment).
    pub(crate) digest_nonce: u32,
    /// EntryPoint sequence of the enable key.
    pub(crate) seq: u64,
    pub(crate) paymaster: Option<(Address, u64, u64)>,
}

impl Default for EnableOpts {
    fn default() -> Self {
        Self {
            chain: CHAIN,
            deploy: true,
            replayable: false,
            digest_nonce: 1,
            seq: 0,
            paymaster: None,
        }
    }
}

/// An enable-mode op (spec §5.1) installing `grant` for the account's session key, signed by the
/// owner (Enable digest, spec §5.2) and the session key (`0xff ‖ ECDSA(EIP-191(userOpHash))`).
pub(crate) fn enable_op(a: &Account, grant: &Grant, call_data: Vec<u8>, o: EnableOpts) -> Op {
    enable_op_approved(a, grant, call_data, o, &|digest, _, _| sign(&a.owner, &digest).to_vec())
}

/// [`enable_op`] with the owner's approval made by `approve(digest, enable data, digest nonce)`
/// (a multi-chain Merkle approval, say).
pub(crate) fn enable_op_approved(
    a: &Account,
    grant: &Grant,
    call_data: Vec<u8>,
    o: EnableOpts,
    approve: &dyn Fn(B256, &EnableData, u32) -> Vec<u8>,
) -> Op {
    let mut op = Op::new(a.address, permission_nonce(ENABLE, a.pid, o.seq), call_data);
    if o.deploy {
        op.factory_data = Some(a.factory_data());
    }
    op.paymaster = o.paymaster;
    let hash = if o.replayable {
        op.replayable_hash()
    } else {
        op.hash(o.chain)
    };
    let user_op_sig = [&[0xff][..], &sign_191(&a.session, hash)].concat();
    let data = EnableData {
        replayable: o.replayable,
        hook: grant.hook,
        validator_data: grant.validator_data(a.session_address()),
        hook_data: grant.hook_data(),
        selector_data: Bytes::copy_from_slice(&grant.selector),
        enable_sig: Bytes::new(),
        user_op_sig: Bytes::new(),
    };
    let domain = EnableDomain {
        account: a.address,
        chain_id: if o.replayable { 0 } else { o.chain },
        version: a.version,
    };
    let digest = enable_digest(&domain, a.validation_id(), o.digest_nonce, &data);
    let enable_sig = approve(digest, &data, o.digest_nonce);
    let tuple = (
        data.validator_data,
        data.hook_data,
        data.selector_data,
        Bytes::copy_from_slice(&enable_sig),
        Bytes::from(user_op_sig),
    )
        .abi_encode_params();
    let magic: &[u8] = if o.replayable { REPLAYABLE_MAGIC.as_slice() } else { &[] };
    op.with_signature([magic, grant.hook.as_slice(), &tuple].concat())
}

/// A default-mode session op, unsigned.
pub(crate) fn session_op(a: &Account, seq: u64, call_data: Vec<u8>) -> Op {
    Op::new(a.address, permission_nonce(DEFAULT, a.pid, seq), call_data)
}

/// The session key's signature for a default-mode op on `chain`: `0xff ‖ ECDSA(EIP-191(hash))`.
pub(crate) fn session_signed(a: &Account, op: Op, chain: u64) -> Op {
    let sig = sign_191(&a.session, op.hash(chain));
    op.with_signature([&[0xff][..], &sig].concat())
}

// ---------------------------------------------------------------------------------------------
// opgate in front of a fake bundler
// ---------------------------------------------------------------------------------------------

/// A fake bundler that accepts every `eth_sendUserOperation` with [`BUNDLER_HASH`] and answers
/// every other method with `null`.
pub(crate) async fn accepting_bundler() -> FakeBundler {
    FakeBundler::start(|r| {
        if r.method == "eth_sendUserOperation" {
            Reply::Json(format!(r#"{{"jsonrpc":"2.0","id":{{id}},"result":"{BUNDLER_HASH}"}}"#))
        } else {
            Reply::Json(r#"{"jsonrpc":"2.0","id":{id},"result":null}"#.into())
        }
    })
    .await
}

pub(crate) struct Harness {
    pub(crate) bundler: FakeBundler,
    pub(crate) opgate: Opgate,
}

/// What a send gave: whether the bundler received the op, and opgate's answer.
pub(crate) type Sent = (bool, Value);

impl Harness {
    /// opgate serving `chains` (all relayed to one fake bundler), with `extra` TOML
    /// (`[store]`, `[[delegates]]`, `[[policies]]`) and its clock at [`NOW`].
    pub(crate) async fn start(chains: &[u64], extra: &str) -> Self {
        let bundler = accepting_bundler().await;
        let mut toml = format!("{extra}\n");
        for id in chains {
            toml.push_str(&format!("[[chains]]\nid = {id}\nupstreams = [\"{}\"]\n", bundler.url()));
        }
        let config = Config::from_toml(&toml, &Overrides::default()).expect("test config is valid");
        let opgate = Opgate::start_with_clock(config, Arc::new(ManualClock::new(NOW))).await;
        Self { bundler, opgate }
    }

    pub(crate) fn sends(&self) -> Vec<String> {
        self.bundler
            .received()
            .into_iter()
            .filter(|r| r.method == "eth_sendUserOperation")
            .map(|r| r.params.unwrap_or_default())
            .collect()
    }

    /// Sends `op` on `chain`; `relayed` is whether the bundler received this very op.
    pub(crate) async fn send(&self, chain: u64, op: &Op) -> Sent {
        let before = self.sends().len();
        let response = call(
            &self.opgate.url(&format!("/{chain}")),
            "eth_sendUserOperation",
            &op.params(),
        )
        .await;
        if std::env::var_os("OPGATE_NEVER_TRICKED_VERBOSE").is_some() {
            let d = &response["error"]["data"];
            eprintln!(
                "chain {chain}: {} {} {} {} {}",
                response["result"], d["reason"], d["policy"], d["rule"], d["detail"]
            );
        }
        let sends = self.sends();
        let signature = hex::encode_prefixed(&op.signature);
        let relayed = sends.len() > before;
        if relayed {
            assert!(
                sends[before..].iter().any(|p| p.contains(&signature)),
                "the bundler received another op than the one sent"
            );
        }
        (relayed, response)
    }

    /// Sends `op` and asserts it was forwarded.
    pub(crate) async fn forwards(&self, chain: u64, op: &Op, what: &str) {
        assert_forwarded(&self.send(chain, op).await, what);
    }

    /// Sends `op` and asserts it was refused with `reason`.
    pub(crate) async fn refuses(&self, chain: u64, op: &Op, reason: &str, what: &str) {
        assert_refused(&self.send(chain, op).await, reason, what);
    }
}

pub(crate) fn assert_forwarded((relayed, response): &Sent, what: &str) {
    assert!(
        *relayed,
        "{what}: should be forwarded, but the bundler did not receive it; opgate answered {response}"
    );
    assert_eq!(
        response["result"], BUNDLER_HASH,
        "{what}: the bundler's answer should come back; got {response}"
    );
}

pub(crate) fn assert_refused((relayed, response): &Sent, reason: &str, what: &str) {
    assert!(
        !relayed,
        "{what}: should be refused ({reason}), but the bundler received it: {response}"
    );
    let data = &response["error"]["data"];
    assert_eq!(
        data["reason"], reason,
        "{what}: refused for another reason than {reason}: {response}"
    );
    for key in ["policy", "rule", "detail"] {
        assert!(
            data[key].as_str().is_some_and(|s| !s.is_empty()),
            "{what}: the refusal should name a non-empty `{key}`: {response}"
        );
    }
}

pub(crate) static PREFIXES: AtomicUsize = AtomicUsize::new(0);

/// A Redis key prefix no other test (or test run) uses.
pub(crate) fn redis_prefix(test: &str) -> String {
    format!(
        "opgate-test:never-tricked:{test}:{}:{}:",
        std::process::id(),
        PREFIXES.fetch_add(1, Ordering::Relaxed)
    )
}

/// Deletes a test's Redis keys when dropped, also when the test fails.
pub(crate) struct RedisKeys(pub(crate) String);

impl Drop for RedisKeys {
    fn drop(&mut self) {
        redis_cleanup(&self.0);
    }
}

pub(crate) fn redis_store(prefix: &str) -> String {
    format!("[store]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\nprefix = \"{prefix}\"\ntimeout = \"5s\"\n")
}

/// Deploys `a` and enables its session key with `grant` by an op calling `call_data`; asserts it
/// was forwarded (opgate then knows the account's owner and release and the permission).
pub(crate) async fn enable(h: &Harness, a: &Account, grant: &Grant, call_data: Vec<u8>, o: EnableOpts) {
    let op = enable_op(a, grant, call_data, o);
    let what = format!("{}: the deploying enable op", label(a.version));
    h.forwards(o.chain, &op, &what).await;
}

/// A sudo session, enabled by a small payment.
pub(crate) async fn sudo_session(h: &Harness, v: KernelVersion, case: u8) -> Account {
    let a = Account::new(v, case);
    enable(h, &a, &Grant::of(vec![sudo()]), pay(1), EnableOpts::default()).await;
    a
}
