//! What an accepted op teaches opgate about its account, written to the registry.
//!
//! - a deploying op: the root validator, its owner and the Kernel release (`initialize`);
//! - an EIP-7702 op delegating to Kernel v3.3: the account is its own root owner;
//! - an enable op: the permission (policies, signer, selector grant, hook, the nonce it was
//!   installed at) and its non-canonical modules, or the validator it installs;
//! - a root (owner) op calling the account's own functions — directly as its call data, or through
//!   `execute` to the account itself: `uninstallValidation` forgets a permission or validator,
//!   `invalidateNonce` moves `currentNonce` and `validNonceFrom`, `installModule` /
//!   `uninstallModule` add or drop a validator, `changeRootValidator` replaces the root,
//!   `upgradeTo` the release; a root op calling the root ECDSA validator's `onUninstall` /
//!   `onInstall(owner)` changes the owner.
//!
//! A deploying op's `initConfig` self-calls are learned the same way, and so are
//! `installValidations` (a permission installed by the owner, no selector granted) and
//! `grantAccess` — called on the account, or reached by delegatecall into a Kernel
//! implementation as the SDK does on v3.1/v3.2 accounts.
//!
//! Lessons are idempotent: learning the same op twice writes the same entries.

use alloy_primitives::{Address, FixedBytes, U256};

use crate::decode::calls::CallDataFormat;
use crate::decode::init::{ECDSA_VALIDATOR, ECDSA_VALIDATOR_V3_0, KERNEL_V3_3_IMPLEMENTATION};
use crate::decode::multichain::MULTICHAIN_ECDSA_VALIDATOR;
use crate::decode::{KernelDecoded, KernelVersion, ValidationMode, ValidationType};
use crate::pipeline::{Gate, Prepared};
use crate::registry::{AccountInfo, Source, StoredPermission};

/// `uninstallValidation(bytes21,bytes,bytes)`.
pub const UNINSTALL_VALIDATION: [u8; 4] = [0xe6, 0xf3, 0xd5, 0x0a];
/// `invalidateNonce(uint32)`.
pub const INVALIDATE_NONCE: [u8; 4] = [0x1f, 0x1b, 0x92, 0xe3];
/// `installModule(uint256,address,bytes)`.
pub const INSTALL_MODULE: [u8; 4] = [0x95, 0x17, 0xe2, 0x9f];
/// `uninstallModule(uint256,address,bytes)`.
pub const UNINSTALL_MODULE: [u8; 4] = [0xa7, 0x17, 0x63, 0xa8];
/// `changeRootValidator(bytes21,address,bytes,bytes)`.
pub const CHANGE_ROOT_VALIDATOR: [u8; 4] = [0x52, 0x14, 0x1c, 0xd9];
/// `upgradeTo(address)`.
pub const UPGRADE_TO: [u8; 4] = [0x36, 0x59, 0xcf, 0xe6];

/// Kernel v3 implementations by release.
const IMPLEMENTATIONS: [(Address, KernelVersion); 4] = [
    (
        alloy_primitives::address!("94F097E1ebEB4ecA3AAE54cabb08905B239A7D27"),
        KernelVersion::V3_0,
    ),
    (
        alloy_primitives::address!("BAC849bB641841b44E965fB01A4Bf5F074f84b4D"),
        KernelVersion::V3_1,
    ),
    (
        alloy_primitives::address!("D830D15D3dc0C269F3dBAa0F3e8626d33CFdaBe1"),
        KernelVersion::V3_2,
    ),
    (KERNEL_V3_3_IMPLEMENTATION, KernelVersion::V3_3),
];

/// The Kernel release an implementation address is.
pub fn release_of(implementation: Address) -> Option<KernelVersion> {
    IMPLEMENTATIONS
        .iter()
        .find(|(a, _)| *a == implementation)
        .map(|(_, v)| *v)
}

/// `grantAccess(bytes21,bytes4,bool)` (Kernel v3.3; earlier releases reach it by delegatecall).
pub const GRANT_ACCESS: [u8; 4] = [0xb9, 0xb8, 0x29, 0x41];
/// `installValidations(bytes21[],(uint32,address)[],bytes[],bytes[])`.
pub const INSTALL_VALIDATIONS: [u8; 4] = [0x91, 0x98, 0xbd, 0xf5];

alloy_sol_types::sol! {
    struct ValidationConfig { uint32 nonce; address hook; }
    function installValidations(bytes21[] vIds, ValidationConfig[] configs, bytes[] validationData, bytes[] hookData);
    function grantAccess(bytes21 vId, bytes4 selector, bool allow);
}

/// One change to what is known.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lesson {
    /// A permission was uninstalled.
    ForgetPermission(FixedBytes<4>),
    /// A permission was installed by the owner (no selector granted yet).
    InstallPermission {
        /// Its id.
        pid: FixedBytes<4>,
        /// Its install data.
        validator_data: alloy_primitives::Bytes,
        /// Its hook.
        hook: Address,
        /// The nonce it was installed at.
        nonce: u32,
    },
    /// A selector was granted to (or taken from) a permission.
    Grant {
        /// The permission.
        pid: FixedBytes<4>,
        /// The selector.
        selector: FixedBytes<4>,
        /// Granted or revoked.
        allow: bool,
    },
}

/// Learns from an op the upstream accepted.
pub(crate) async fn learn(gate: &Gate, p: &Prepared) {
    let Some(k) = p.decoded.detail.as_ref().filter(|_| p.decoded.kernel.is_some()) else {
        return;
    };
    let sender = p.op.sender();
    let before = p.account.as_deref().cloned();
    let mut info = before.clone().unwrap_or_default();
    let mut lessons = Vec::new();
    if let Some(d) = &k.deployment {
        let root = d.root_validator.as_ref();
        info.root_owner = root.and_then(|r| r.owner).or(info.root_owner);
        info.root_validator = root.and_then(|r| r.address).or(info.root_validator);
        info.kernel_version = d.kernel_version.or(info.kernel_version);
        // `initConfig`: self-calls the account makes right after `initialize` (v3.1+).
        for call in &d.init_config {
            if let Ok(calls) = crate::decode::decode_calls(call) {
                route(&calls, call, sender, &mut info, &mut lessons);
            }
        }
    }
    if p.op
        .eip7702_auth()
        .is_some_and(|a| a.address() == KERNEL_V3_3_IMPLEMENTATION)
    {
        info.eip7702 = true;
        info.root_owner = Some(sender);
        info.kernel_version = Some(KernelVersion::V3_3);
    }
    if let Some(n) = &k.nonce {
        match (n.mode, n.validation_type) {
            (ValidationMode::Enable, ValidationType::Permission) => {
                learn_permission(gate, p, k).await;
                if let (Some(permission), Some(enable)) = (&k.permission, &k.enable) {
                    let hook = Some(enable.data.hook).filter(|h| *h > Address::with_last_byte(1));
                    add_modules(&mut info, permission, hook);
                }
            }
            (ValidationMode::Enable, ValidationType::Validator) => {
                if let Some(v) = n.validator.filter(|v| !info.has_validator(*v)) {
                    info.validators.push(v);
                }
            }
            (_, ValidationType::Root) => owner_calls(k, p.op.call_data(), sender, &mut info, &mut lessons),
            _ => {}
        }
    }
    if before.as_ref() != Some(&info) && info != AccountInfo::default() {
        if let Err(e) = gate.registry.put_account(p.chain_id, sender, info).await {
            gate.store_error("registry", &e);
        }
    }
    for lesson in lessons {
        match lesson {
            Lesson::InstallPermission {
                pid,
                validator_data,
                hook,
                nonce,
            } => {
                let stored = StoredPermission {
                    validator_data,
                    selectors: Vec::new(),
                    source: Source::Owner,
                    learned_at: p.now,
                    hook: Some(hook),
                    enable_nonce: Some(nonce),
                    uninstalled: false,
                    pending: p.pending(),
                };
                match gate.registry.put_permission(p.chain_id, sender, pid, &stored).await {
                    Ok(()) => tracing::info!(%sender, permission_id = %pid, "permission installed by the owner"),
                    Err(e) => gate.store_error("registry", &e),
                }
            }
            Lesson::Grant { pid, selector, allow } => {
                let mut stored = match gate.registry.permission(p.chain_id, sender, pid).await {
                    Ok(Some(known)) => known.stored.clone(),
                    Ok(None) => continue,
                    Err(e) => {
                        gate.store_error("registry", &e);
                        continue;
                    }
                };
                stored.selectors.retain(|s| *s != selector);
                if allow {
                    stored.selectors.push(selector);
                }
                if let Err(e) = gate.registry.put_permission(p.chain_id, sender, pid, &stored).await {
                    gate.store_error("registry", &e);
                }
            }
            Lesson::ForgetPermission(pid) => {
                let tombstone = match gate.registry.permission(p.chain_id, sender, pid).await {
                    Ok(Some(known)) => StoredPermission {
                        uninstalled: true,
                        pending: p.pending(),
                        ..known.stored.clone()
                    },
                    Ok(None) => continue,
                    Err(e) => {
                        gate.store_error("registry", &e);
                        continue;
                    }
                };
                match gate.registry.put_permission(p.chain_id, sender, pid, &tombstone).await {
                    Ok(()) => tracing::info!(%sender, permission_id = %pid, "permission uninstalled by the owner"),
                    Err(e) => gate.store_error("registry", &e),
                }
            }
        }
    }
}

/// Records a permission's non-canonical modules (policies, signer, hook) on its account.
fn add_modules(info: &mut AccountInfo, permission: &crate::decode::Permission, hook: Option<Address>) {
    let installed = permission
        .policies
        .iter()
        .map(|p| p.address)
        .chain([permission.signer.contract])
        .chain(hook);
    for m in installed {
        if !crate::policy::guard::KNOWN_MODULES.contains(&m) && !info.modules.contains(&m) {
            info.modules.push(m);
        }
    }
}

async fn learn_permission(gate: &Gate, p: &Prepared, k: &KernelDecoded) {
    let sender = p.op.sender();
    let Some(n) = &k.nonce else { return };
    let (Some(pid), Some(enable), Some(permission)) = (n.permission_id, &k.enable, &k.permission) else {
        return;
    };
    if let Some(signer) = permission.signer.address {
        if let Err(e) = gate.registry.put_signer(p.chain_id, sender, signer, pid).await {
            gate.store_error("registry", &e);
        }
    }
    let stored = StoredPermission {
        validator_data: enable.data.validator_data.clone(),
        selectors: k.selector_data.iter().map(|s| s.selector).collect(),
        source: Source::Enable,
        learned_at: p.now,
        hook: Some(enable.data.hook),
        enable_nonce: enable.digest_nonce,
        uninstalled: false,
        pending: p.pending(),
    };
    match gate.registry.put_permission(p.chain_id, sender, pid, &stored).await {
        Ok(()) => tracing::info!(%sender, permission_id = %pid, "permission learned from an accepted enable op"),
        Err(e) => gate.store_error("registry", &e),
    }
}

/// The account's own functions a root op calls: its call data itself, or `execute` calls whose
/// target is the account.
fn owner_calls(
    k: &KernelDecoded,
    call_data: &[u8],
    sender: Address,
    info: &mut AccountInfo,
    lessons: &mut Vec<Lesson>,
) {
    if let Some(calls) = &k.calls {
        route(calls, call_data, sender, info, lessons);
    }
}

/// The account functions `calls` (decoded from `call_data`) reach.
fn route(
    calls: &crate::decode::DecodedCalls,
    call_data: &[u8],
    sender: Address,
    info: &mut AccountInfo,
    lessons: &mut Vec<Lesson>,
) {
    if calls.format == CallDataFormat::Unknown {
        apply(call_data, info, lessons);
    }
    for c in calls.calls.iter() {
        if c.target == sender {
            apply(&c.data, info, lessons);
        } else if Some(c.target) == info.root_validator {
            root_module(&c.data, info);
        } else if c.call_type == crate::decode::CallKind::DelegateCall
            && IMPLEMENTATIONS.iter().any(|(a, _)| *a == c.target)
        {
            // A Kernel implementation delegatecalled runs its function on the account's storage
            // (how the SDK reaches `grantAccess` on v3.1/v3.2 accounts).
            apply(&c.data, info, lessons);
        }
    }
}

/// A root op calling the root ECDSA validator module itself: `onUninstall` drops its owner,
/// `onInstall(owner)` sets a new one.
fn root_module(data: &[u8], info: &mut AccountInfo) {
    let Some(sel) = data.get(..4) else { return };
    if sel == &alloy_primitives::keccak256("onUninstall(bytes)")[..4] {
        info.root_owner = None;
    } else if sel == &alloy_primitives::keccak256("onInstall(bytes)")[..4] {
        info.root_owner = bytes_arg(data, 0)
            .filter(|d| d.len() >= 20)
            .map(|d| Address::from_slice(&d[..20]));
    }
}

fn word(data: &[u8], i: usize) -> Option<&[u8]> {
    data.get(4 + 32 * i..4 + 32 * i + 32)
}

fn small(data: &[u8], i: usize) -> Option<u64> {
    let w = word(data, i)?;
    w[..24]
        .iter()
        .all(|b| *b == 0)
        .then(|| u64::from_be_bytes(w[24..].try_into().unwrap_or_default()))
}

fn address(data: &[u8], i: usize) -> Option<Address> {
    word(data, i).map(|w| Address::from_slice(&w[12..]))
}

/// The `bytes` argument whose head is word `i`.
fn bytes_arg(data: &[u8], i: usize) -> Option<&[u8]> {
    let args = data.get(4..)?;
    let off = usize::try_from(small(data, i)?).ok()?;
    let len = usize::try_from(U256::from_be_slice(args.get(off..off + 32)?)).ok()?;
    args.get(off + 32..off.checked_add(32)?.checked_add(len)?)
}

fn apply(data: &[u8], info: &mut AccountInfo, lessons: &mut Vec<Lesson>) {
    let Some(sel) = data.get(..4) else { return };
    let sel: [u8; 4] = sel.try_into().unwrap_or_default();
    match sel {
        UNINSTALL_VALIDATION => {
            let Some(w) = word(data, 0) else { return };
            match w[0] {
                0x02 => lessons.push(Lesson::ForgetPermission(FixedBytes::from_slice(&w[1..5]))),
                0x01 => {
                    let v = Address::from_slice(&w[1..21]);
                    info.validators.retain(|x| *x != v);
                }
                _ => {}
            }
        }
        INVALIDATE_NONCE => {
            if let Some(n) = small(data, 0).and_then(|n| u32::try_from(n).ok()) {
                info.current_nonce = Some(n);
                info.valid_nonce_from = Some(n);
            }
        }
        INSTALL_MODULE | UNINSTALL_MODULE => {
            let (Some(1), Some(module)) = (small(data, 0), address(data, 1)) else {
                return;
            };
            if sel == INSTALL_MODULE {
                if !info.has_validator(module) {
                    info.validators.push(module);
                }
            } else {
                info.validators.retain(|x| *x != module);
            }
        }
        CHANGE_ROOT_VALIDATOR => {
            let Some(w) = word(data, 0) else { return };
            if w[0] == 0x01 {
                let v = Address::from_slice(&w[1..21]);
                info.root_validator = Some(v);
                let ecdsa = [ECDSA_VALIDATOR, ECDSA_VALIDATOR_V3_0, MULTICHAIN_ECDSA_VALIDATOR].contains(&v);
                info.root_owner = bytes_arg(data, 2)
                    .filter(|d| ecdsa && d.len() >= 20)
                    .map(|d| Address::from_slice(&d[..20]));
            } else {
                // A permission (or anything else) as root: opgate no longer knows an owner key.
                info.root_validator = None;
                info.root_owner = None;
            }
        }
        INSTALL_VALIDATIONS => {
            use alloy_sol_types::SolCall;
            let Ok(call) = installValidationsCall::abi_decode(data) else {
                return;
            };
            let n = call.vIds.len().min(call.configs.len()).min(call.validationData.len());
            for i in 0..n {
                let vid = call.vIds[i];
                let config = &call.configs[i];
                match vid[0] {
                    0x02 => {
                        let validator_data = call.validationData[i].clone();
                        if let Ok(permission) = crate::decode::decode_permission_data(&validator_data) {
                            let hook = Some(config.hook).filter(|h| *h > Address::with_last_byte(1));
                            add_modules(info, &permission, hook);
                        }
                        lessons.push(Lesson::InstallPermission {
                            pid: FixedBytes::from_slice(&vid[1..5]),
                            validator_data,
                            hook: config.hook,
                            nonce: config.nonce,
                        });
                    }
                    0x01 => {
                        let v = Address::from_slice(&vid[1..21]);
                        if !info.has_validator(v) {
                            info.validators.push(v);
                        }
                    }
                    _ => {}
                }
            }
        }
        GRANT_ACCESS => {
            use alloy_sol_types::SolCall;
            if let Ok(call) = grantAccessCall::abi_decode(data) {
                if call.vId[0] == 0x02 {
                    lessons.push(Lesson::Grant {
                        pid: FixedBytes::from_slice(&call.vId[1..5]),
                        selector: call.selector,
                        allow: call.allow,
                    });
                }
            }
        }
        UPGRADE_TO => {
            if let Some(imp) = address(data, 0) {
                info.kernel_version = IMPLEMENTATIONS.iter().find(|(a, _)| *a == imp).map(|(_, v)| *v);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(sel: [u8; 4], words: &[[u8; 32]]) -> Vec<u8> {
        let mut d = sel.to_vec();
        for w in words {
            d.extend(w);
        }
        d
    }

    #[test]
    fn owner_functions_update_what_is_known() {
        let mut info = AccountInfo::default();
        let mut lessons = Vec::new();
        let mut vid = [0u8; 32];
        vid[0] = 2;
        vid[1..5].copy_from_slice(&[0xc0, 0xde, 0xc0, 0xde]);
        apply(&call(UNINSTALL_VALIDATION, &[vid]), &mut info, &mut lessons);
        assert_eq!(
            lessons,
            vec![Lesson::ForgetPermission(FixedBytes([0xc0, 0xde, 0xc0, 0xde]))]
        );
        apply(
            &call(INVALIDATE_NONCE, &[U256::from(2).to_be_bytes()]),
            &mut info,
            &mut lessons,
        );
        assert_eq!((info.current_nonce, info.valid_nonce_from), (Some(2), Some(2)));
        let mut module = [0u8; 32];
        module[31] = 0x42;
        apply(
            &call(INSTALL_MODULE, &[U256::from(1).to_be_bytes(), module]),
            &mut info,
            &mut lessons,
        );
        assert!(info.has_validator(Address::with_last_byte(0x42)));
        apply(
            &call(UNINSTALL_MODULE, &[U256::from(1).to_be_bytes(), module]),
            &mut info,
            &mut lessons,
        );
        assert!(!info.has_validator(Address::with_last_byte(0x42)));
        // installValidations (a permission and a validator) and grantAccess, as initConfig sends them.
        use alloy_sol_types::SolCall;
        let mut pvid = [0u8; 21];
        pvid[0] = 2;
        pvid[1..5].copy_from_slice(&[1, 2, 3, 4]);
        let mut vvid = [0u8; 21];
        vvid[0] = 1;
        vvid[20] = 0x77;
        let install = installValidationsCall {
            vIds: vec![FixedBytes(pvid), FixedBytes(vvid)],
            configs: vec![
                ValidationConfig {
                    nonce: 1,
                    hook: Address::with_last_byte(1),
                },
                ValidationConfig {
                    nonce: 1,
                    hook: Address::with_last_byte(1),
                },
            ],
            validationData: vec![vec![0xaa; 3].into(), vec![].into()],
            hookData: vec![vec![].into(), vec![].into()],
        }
        .abi_encode();
        let grant = grantAccessCall {
            vId: FixedBytes(pvid),
            selector: FixedBytes([0xe9, 0xae, 0x5c, 0x53]),
            allow: true,
        }
        .abi_encode();
        let mut lessons = Vec::new();
        apply(&install, &mut info, &mut lessons);
        apply(&grant, &mut info, &mut lessons);
        assert_eq!(
            lessons,
            vec![
                Lesson::InstallPermission {
                    pid: FixedBytes([1, 2, 3, 4]),
                    validator_data: vec![0xaa; 3].into(),
                    hook: Address::with_last_byte(1),
                    nonce: 1,
                },
                Lesson::Grant {
                    pid: FixedBytes([1, 2, 3, 4]),
                    selector: FixedBytes([0xe9, 0xae, 0x5c, 0x53]),
                    allow: true,
                },
            ]
        );
        assert!(info.has_validator(Address::with_last_byte(0x77)));
        let mut imp = [0u8; 32];
        imp[12..].copy_from_slice(KERNEL_V3_3_IMPLEMENTATION.as_slice());
        apply(&call(UPGRADE_TO, &[imp]), &mut info, &mut lessons);
        assert_eq!(info.kernel_version, Some(KernelVersion::V3_3));
    }
}
