//! The multi-chain ECDSA validator's signature forms (spec §5.5) and its Merkle proofs.
//!
//! * 65 bytes: a plain ECDSA signature over the hash (raw or EIP-191).
//! * `ecdsaSig(65) ‖ merkleRoot(32) ‖ abi.encode(bytes32[] proof)`: the hash must be a leaf
//!   under `merkleRoot` and `ecdsaSig` signs the root (raw or EIP-191; the SDK uses EIP-191).
//! * UserOperation path only, when `ecdsaSig` is [`DUMMY_ECDSA_SIG`]: the tail is
//!   `abi.encode(bytes32 dummyUserOpHash, bytes32[] proof)` (gas estimation; the signature
//!   itself never validates).
//!
//! Proofs are solady `MerkleProofLib`: sorted-pair keccak, leaves are the raw 32-byte hashes.

use alloy_primitives::{address, hex, keccak256, Address, Bytes, B256};
use serde::Serialize;

use super::abi::{Abi, Arith};
use super::ecdsa::{recover_matching, HashScheme};
use super::{DecodeError, Source};

/// The multi-chain ECDSA validator.
pub const MULTICHAIN_ECDSA_VALIDATOR: Address = address!("5C97aA67Ba578E3c54ec5942A7563Ea9130E4f5F");

/// The SDK's dummy ECDSA signature (`r = 0xff…f0 0…0`, `s = 0x7aa…a`, `v = 28`).
pub const DUMMY_ECDSA_SIG: [u8; 65] = hex!(
    "fffffffffffffffffffffffffffffff0000000000000000000000000000000007aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1c"
);

/// A decoded multi-chain validator signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", rename_all = "kebab-case")]
pub enum MultiChainSignature {
    /// A 65-byte ECDSA signature over the hash itself.
    Plain {
        /// The signature.
        signature: Bytes,
    },
    /// A signature over a Merkle root plus the proof of the hash under it.
    #[serde(rename_all = "camelCase")]
    Merkle {
        /// 65-byte ECDSA signature over the root.
        signature: Bytes,
        /// The root.
        merkle_root: B256,
        /// Sibling hashes from the leaf up.
        proof: Vec<B256>,
    },
    /// The SDK's estimation stub: proof of a supplied dummy hash.
    #[serde(rename_all = "camelCase")]
    Dummy {
        /// The root.
        merkle_root: B256,
        /// The leaf the proof is checked against.
        dummy_user_op_hash: B256,
        /// Sibling hashes.
        proof: Vec<B256>,
    },
}

/// Decodes a multi-chain validator signature; `user_op` enables the dummy branch, which only
/// `validateUserOp` has (the fuzzing entry point for this form).
pub fn decode_multichain_signature(sig: &[u8], user_op: bool) -> Result<MultiChainSignature, DecodeError> {
    multichain_signature_in(Source::COPY, sig, user_op)
}

/// [`decode_multichain_signature`], the ECDSA signature taken from `src`.
pub(crate) fn multichain_signature_in(
    src: Source<'_>,
    sig: &[u8],
    user_op: bool,
) -> Result<MultiChainSignature, DecodeError> {
    if sig.len() == 65 {
        return Ok(MultiChainSignature::Plain {
            signature: src.part(sig),
        });
    }
    if sig.len() < 97 {
        return Err(DecodeError::TooShort {
            what: "multi-chain signature",
            len: sig.len(),
            min: 97,
        });
    }
    let ecdsa = &sig[..65];
    let merkle_root = B256::from_slice(&sig[65..97]);
    let tail = Abi::new(&sig[97..], "multi-chain proof");
    if user_op && ecdsa == DUMMY_ECDSA_SIG {
        let dummy_user_op_hash = B256::from(*tail.word(0)?);
        let proof = tail.word_array(tail.pointer(0, 32, Arith::Checked)?)?;
        return Ok(MultiChainSignature::Dummy {
            merkle_root,
            dummy_user_op_hash,
            proof,
        });
    }
    let proof = tail.word_array(tail.pointer(0, 0, Arith::Checked)?)?;
    Ok(MultiChainSignature::Merkle {
        signature: src.part(ecdsa),
        merkle_root,
        proof,
    })
}

/// Whether `leaf` is under `root` by `proof` (sorted-pair keccak).
pub fn verify_merkle_proof(leaf: B256, proof: &[B256], root: B256) -> bool {
    merkle_root_of(leaf, proof) == root
}

/// The root a proof leads to from `leaf`.
pub fn merkle_root_of(leaf: B256, proof: &[B256]) -> B256 {
    proof.iter().fold(leaf, |node, sibling| {
        let mut buf = [0u8; 64];
        let (a, b) = if node <= *sibling {
            (node, *sibling)
        } else {
            (*sibling, node)
        };
        buf[..32].copy_from_slice(a.as_slice());
        buf[32..].copy_from_slice(b.as_slice());
        keccak256(buf)
    })
}

/// Who approved `hash` through `sig`, with the scheme used: for the plain form the signer of
/// `hash`, for the Merkle form the signer of the root (only when the proof holds). When
/// `expected` is given the scheme that recovers it is chosen, otherwise the SDK's: raw for the
/// plain form, EIP-191 for the root.
pub fn approver(
    sig: &MultiChainSignature,
    hash: Option<B256>,
    expected: Option<Address>,
) -> Result<Option<(Address, HashScheme)>, DecodeError> {
    let (signed, signature, default) = match sig {
        MultiChainSignature::Plain { signature } => match hash {
            Some(h) => (h, signature, HashScheme::Raw),
            None => return Ok(None),
        },
        MultiChainSignature::Merkle {
            signature, merkle_root, ..
        } => (*merkle_root, signature, HashScheme::Eip191),
        MultiChainSignature::Dummy { .. } => return Ok(None),
    };
    recover_matching(&signed, signature, expected, default).map(Some)
}
