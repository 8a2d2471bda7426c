//! A permission's install data (spec §4.2): `abi.encode(bytes[] entries)`, entries
//! `[0, n-1)` policies `flag(2) ‖ policy(20) ‖ initData`, the last one the signer
//! `permissionFlag(2) ‖ signer(20) ‖ signerData`. Read like Kernel's `_installPermission`:
//! the array offset is added in assembly (modulo 2^256), entries through Solidity's calldata
//! accessor; 1 to 254 entries; every entry at least 22 bytes.

use alloy_primitives::{address, Address, Bytes, FixedBytes, B256};
use serde::Serialize;

use super::abi::{Abi, Arith};
use super::policy::{decode_policy, Policy, SKIP_SIGNATURE, SKIP_USEROP};
use super::{ser, DecodeError, Source};

/// ECDSASigner.
pub const ECDSA_SIGNER: Address = address!("6A6F069E2a08c2468e7724Ab3250CdBFBA14D4FF");
/// WebAuthnSigner v0.0.1 (SDK: critical vulnerability).
pub const WEBAUTHN_SIGNER_V0_0_1: Address = address!("8AA55d4BfAE101609078681A69B5bc3181516612");
/// WebAuthnSigner v0.0.2 (SDK: critical vulnerability).
pub const WEBAUTHN_SIGNER_V0_0_2: Address = address!("58625164e306242c7613223bDeb68fbe11300606");
/// WebAuthnSigner v0.0.3 (SDK: critical vulnerability).
pub const WEBAUTHN_SIGNER_V0_0_3: Address = address!("615d8641B6Ce9406DE7c3C01f57c552Ab3A96f83");
/// WebAuthnSigner v0.0.4.
pub const WEBAUTHN_SIGNER_V0_0_4: Address = address!("65DEeC8fEe717dc044D0CFD63cCf55F02cCaC2b3");

/// Kind of permission signer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SignerKind {
    /// ECDSASigner: a session key address.
    Ecdsa,
    /// WebAuthnSigner: a P-256 public key.
    #[serde(rename = "webauthn")]
    WebAuthn,
    /// Not a known signer contract.
    Unknown,
}

/// A WebAuthn signer's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebAuthnKey {
    /// Public key x.
    pub x: B256,
    /// Public key y.
    pub y: B256,
    /// `keccak(authenticatorId)`.
    pub authenticator_id_hash: B256,
}

/// The signer of a permission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Signer {
    /// Signer kind.
    #[serde(rename = "type")]
    pub kind: SignerKind,
    /// Signer contract.
    #[serde(serialize_with = "ser::address")]
    pub contract: Address,
    /// Session key address (ECDSA).
    #[serde(serialize_with = "ser::opt_address")]
    pub address: Option<Address>,
    /// WebAuthn key (WebAuthn).
    pub webauthn: Option<WebAuthnKey>,
    /// Release of the signer contract, when its address tells it.
    pub version: Option<&'static str>,
    /// Raw signer install data.
    pub data: Bytes,
}

/// A permission: policies plus signer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    /// Permission flag (`0x0001`: unusable for userOps, `0x0002`: unusable for ERC-1271).
    pub flag: FixedBytes<2>,
    /// The signer.
    pub signer: Signer,
    /// The policies in Kernel's order (index = signature segment index).
    pub policies: Vec<Policy>,
}

impl Permission {
    /// Whether Kernel refuses this permission for UserOperations (`PermissionNotAlllowedForUserOp`).
    pub fn skips_user_op(&self) -> bool {
        u16::from_be_bytes(self.flag.0) & SKIP_USEROP != 0
    }

    /// Whether Kernel refuses this permission for ERC-1271 signatures.
    pub fn skips_signature(&self) -> bool {
        u16::from_be_bytes(self.flag.0) & SKIP_SIGNATURE != 0
    }
}

/// Decodes a permission's install data (the fuzzing entry point for permission data).
pub fn decode_permission_data(data: &[u8]) -> Result<Permission, DecodeError> {
    permission_data_in(Source::COPY, data)
}

/// [`decode_permission_data`], the signer's data taken from `src`.
pub(crate) fn permission_data_in(src: Source<'_>, data: &[u8]) -> Result<Permission, DecodeError> {
    let abi = Abi::new(data, "permission data");
    let list = abi.pointer(0, 0, Arith::Wrapping)?;
    let count = abi.u256(list)?;
    if count == alloy_primitives::U256::ZERO || count > alloy_primitives::U256::from(254) {
        return Err(DecodeError::PermissionEntryCount(
            usize::try_from(count).unwrap_or(usize::MAX),
        ));
    }
    let entries = abi
        .dynamic_array(list, Arith::Wrapping)?
        .into_iter()
        .map(|pos| {
            let entry = abi.bytes(pos)?;
            if entry.len() < 22 {
                return Err(DecodeError::TooShort {
                    what: "permission entry",
                    len: entry.len(),
                    min: 22,
                });
            }
            Ok(entry)
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    let Some((signer, policies)) = entries.split_last() else {
        return Err(DecodeError::PermissionEntryCount(0));
    };
    let policies = policies
        .iter()
        .map(|e| {
            decode_policy(
                Address::from_slice(&e[2..22]),
                FixedBytes::from_slice(&e[..2]),
                &e[22..],
            )
        })
        .collect();
    Ok(Permission {
        flag: FixedBytes::from_slice(&signer[..2]),
        signer: signer_in(src, Address::from_slice(&signer[2..22]), &signer[22..])?,
        policies,
    })
}

/// Parses a signer's install data by its contract address.
pub fn decode_signer(contract: Address, data: &[u8]) -> Result<Signer, DecodeError> {
    signer_in(Source::COPY, contract, data)
}

fn signer_in(src: Source<'_>, contract: Address, data: &[u8]) -> Result<Signer, DecodeError> {
    let mut signer = Signer {
        kind: SignerKind::Unknown,
        contract,
        address: None,
        webauthn: None,
        version: None,
        data: src.part(data),
    };
    match contract {
        ECDSA_SIGNER => {
            let key = Abi::new(data, "ecdsa signer data").slice(0, 20)?;
            signer.kind = SignerKind::Ecdsa;
            signer.address = Some(Address::from_slice(key));
        }
        WEBAUTHN_SIGNER_V0_0_1 | WEBAUTHN_SIGNER_V0_0_2 | WEBAUTHN_SIGNER_V0_0_3 | WEBAUTHN_SIGNER_V0_0_4 => {
            let abi = Abi::new(data, "webauthn signer data");
            signer.kind = SignerKind::WebAuthn;
            signer.webauthn = Some(WebAuthnKey {
                x: B256::from(*abi.word(0)?),
                y: B256::from(*abi.word(32)?),
                authenticator_id_hash: B256::from(*abi.word(64)?),
            });
            signer.version = Some(match contract {
                WEBAUTHN_SIGNER_V0_0_1 => "0.0.1",
                WEBAUTHN_SIGNER_V0_0_2 => "0.0.2",
                WEBAUTHN_SIGNER_V0_0_3 => "0.0.3",
                _ => "0.0.4",
            });
        }
        _ => {}
    }
    Ok(signer)
}
