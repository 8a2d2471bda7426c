//! ECDSA recovery as Kernel's validators and signers do it (solady `ECDSA.recover` over the
//! `ecrecover` precompile).
//!
//! Two forms are accepted, as solady's `ECDSA.recover` (which Kernel's ECDSA validator and
//! ECDSASigner use) accepts them: 65-byte `r ‖ s ‖ v` with `v ∈ {27, 28}`, and the 64-byte EIP-2098
//! compact form `r ‖ yParityAndS`. A high `s` is accepted (the precompile does not check
//! malleability). Anything unrecoverable is an error, which matches the chain: solady's `recover`
//! reverts instead of returning zero.

use alloy_primitives::{eip191_hash_message, uint, Address, Signature, B256, U256};

use super::DecodeError;

/// The order `n` of the secp256k1 group.
const SECP256K1N_ORDER: U256 = uint!(0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141_U256);

/// Which hash an ECDSA signature was made over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashScheme {
    /// The 32-byte hash itself (typed-data signing).
    Raw,
    /// EIP-191: `keccak("\x19Ethereum Signed Message:\n32" ‖ hash)` (`signMessage({raw})`).
    Eip191,
}

/// Recovers the signer of `hash` from a 65-byte `r ‖ s ‖ v` or 64-byte compact (EIP-2098)
/// signature.
pub fn recover(hash: &B256, sig: &[u8]) -> Result<Address, DecodeError> {
    let (r, s, parity) = match sig.len() {
        65 => {
            let v = sig[64];
            let parity = match v {
                27 => false,
                28 => true,
                _ => return Err(DecodeError::InvalidRecoveryId(v)),
            };
            (
                U256::from_be_slice(&sig[..32]),
                U256::from_be_slice(&sig[32..64]),
                parity,
            )
        }
        64 => {
            let vs = U256::from_be_slice(&sig[32..64]);
            let parity = vs.bit(255);
            let mut s = vs;
            s.set_bit(255, false);
            (U256::from_be_slice(&sig[..32]), s, parity)
        }
        len => {
            return Err(DecodeError::BadSize {
                what: "ecdsa signature",
                len,
                expected: "65 bytes (r ‖ s ‖ v) or 64 bytes (EIP-2098 r ‖ yParityAndS)",
            })
        }
    };
    // `ecrecover` needs 0 < r, s < n; checking first also keeps alloy's low-s normalisation
    // (n − s) in range.
    let in_range = |x: U256| x != U256::ZERO && x < SECP256K1N_ORDER;
    if !in_range(r) || !in_range(s) {
        return Err(DecodeError::Unrecoverable);
    }
    Signature::new(r, s, parity)
        .recover_address_from_prehash(hash)
        .map_err(|_| DecodeError::Unrecoverable)
}

/// Recovers the signer of `EIP-191(hash)` (`\x19Ethereum Signed Message:\n32` ‖ hash).
pub fn recover_eip191(hash: &B256, sig: &[u8]) -> Result<Address, DecodeError> {
    recover(&eip191_hash(hash), sig)
}

/// Recovers with the given scheme.
pub fn recover_with(scheme: HashScheme, hash: &B256, sig: &[u8]) -> Result<Address, DecodeError> {
    match scheme {
        HashScheme::Raw => recover(hash, sig),
        HashScheme::Eip191 => recover_eip191(hash, sig),
    }
}

/// The EIP-191 hash of a 32-byte message.
pub fn eip191_hash(hash: &B256) -> B256 {
    eip191_hash_message(hash.as_slice())
}

/// Which scheme, if any, makes `sig` over `hash` recover `expected` (raw tried first, as the
/// validators do).
pub fn matching_scheme(hash: &B256, sig: &[u8], expected: Address) -> Option<HashScheme> {
    [HashScheme::Raw, HashScheme::Eip191]
        .into_iter()
        .find(|scheme| recover_with(*scheme, hash, sig).is_ok_and(|a| a == expected))
}

/// The signer of `sig` over `hash` and the scheme it was recovered with: the first scheme that
/// recovers `expected` (as [`matching_scheme`] picks it), else `default`. Each scheme is recovered
/// at most once — a recovery is most of the cost of decoding an enable-mode op.
pub fn recover_matching(
    hash: &B256,
    sig: &[u8],
    expected: Option<Address>,
    default: HashScheme,
) -> Result<(Address, HashScheme), DecodeError> {
    let Some(expected) = expected else {
        return Ok((recover_with(default, hash, sig)?, default));
    };
    let raw = recover(hash, sig);
    if raw == Ok(expected) {
        return Ok((expected, HashScheme::Raw));
    }
    let eip191 = recover_eip191(hash, sig);
    if eip191 == Ok(expected) {
        return Ok((expected, HashScheme::Eip191));
    }
    let fallback = match default {
        HashScheme::Raw => raw,
        HashScheme::Eip191 => eip191,
    };
    Ok((fallback?, default))
}
