//! userOpHash, computed locally for each EntryPoint version.
//!
//! The proxy identifies, deduplicates and charges ops by this hash, and session-key signatures
//! are checked against it, so it must be the exact value the EntryPoint (and the bundler) will
//! compute — never one taken from the client or the bundler's reply.
//!
//! - v0.6: `keccak(abi.encode(keccak(abi.encode(unpacked fields, hashed bytes)), entryPoint, chainId))`
//! - v0.7: the same shape over the packed fields (`accountGasLimits`, `gasFees`, packed
//!   `paymasterAndData`)
//! - v0.8: EIP-712 over `PackedUserOperation` (signature excluded), domain
//!   `{name: "ERC4337", version: "1", chainId, verifyingContract: entryPoint}`, with the EIP-7702
//!   `initCode` override
//! - Kernel ≥ v3.2 "replayable" hash: the v0.7 formula with chain id 0.
//!
//! EIP-7702 in v0.8: when `factory` is the `0x7702` marker, the EntryPoint hashes the sender's
//! delegate address (read from its code, `0xef0100 ‖ delegate`) in place of the marker. The proxy
//! does not read chain state here, so — like viem — it takes the delegate from
//! `eip7702Auth.address`; without `eip7702Auth` the hash is refused with
//! [`UserOpError::Eip7702DelegateUnknown`] (a caller that knows the delegate can use
//! [`UserOperationV07::hash_v08_with_delegate`]). When the bundle transaction applies the
//! authorization, the sender's code points at exactly that address and the hashes agree. When it
//! does not (a stale authorization nonce, say), the EntryPoint hashes the sender's current
//! delegate instead; the op's signature, made over the same hash viem computes and we compute,
//! then normally fails validation.

use alloy_primitives::{b256, keccak256, Address, B256, U256};
use alloy_sol_types::SolValue;

use super::operation::{UserOperation, UserOperationV06, UserOperationV07, EIP7702_FACTORY_MARKER};
use super::UserOpError;

/// `keccak256("PackedUserOperation(address sender,uint256 nonce,bytes initCode,bytes callData,bytes32 accountGasLimits,uint256 preVerificationGas,bytes32 gasFees,bytes paymasterAndData)")`.
pub const PACKED_USEROP_TYPEHASH: B256 = b256!("0x29a0bca4af4be3421398da00295e58e6d7de38cb492214754cb6a47507dd6f8e");

/// `keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")`.
pub const EIP712_DOMAIN_TYPEHASH: B256 = b256!("0x8b73c3c69bb8fe3d512ecc4cf759cc79239f7b179b0ffacaa9a75d522b39400f");

/// EIP-712 domain name of EntryPoint v0.8.
pub const EIP712_DOMAIN_NAME: &str = "ERC4337";
/// EIP-712 domain version of EntryPoint v0.8.
pub const EIP712_DOMAIN_VERSION: &str = "1";

/// `keccak256("ERC4337")`, the hashed EIP-712 domain name.
const EIP712_DOMAIN_NAME_HASH: B256 = b256!("0x364da28a5c92bcc87fe97c8813a6c6b8a3a049b0ea0a328fcb0b4f0e00337586");
/// `keccak256("1")`, the hashed EIP-712 domain version.
const EIP712_DOMAIN_VERSION_HASH: B256 = b256!("0xc89efdaa54c0f20c7adf612882df0950f5a951637e0307cdcb4c672f298b8bc6");
/// `keccak256("")`.
const EMPTY_HASH: B256 = b256!("0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");

/// `keccak256(bytes)`, with the empty string's hash (most ops' initCode and paymaster data)
/// taken from a constant.
fn hash_bytes(bytes: &[u8]) -> B256 {
    if bytes.is_empty() {
        EMPTY_HASH
    } else {
        keccak256(bytes)
    }
}

/// `keccak(abi.encode(inner_hash, entryPoint, chainId))`: the outer step of the v0.6/v0.7 hash.
fn wrap(inner: B256, entry_point: Address, chain_id: U256) -> B256 {
    keccak256((inner, entry_point, chain_id).abi_encode())
}

/// The EntryPoint v0.8 EIP-712 domain separator.
pub fn eip712_domain_separator(entry_point: Address, chain_id: u64) -> B256 {
    keccak256(
        (
            EIP712_DOMAIN_TYPEHASH,
            EIP712_DOMAIN_NAME_HASH,
            EIP712_DOMAIN_VERSION_HASH,
            U256::from(chain_id),
            entry_point,
        )
            .abi_encode(),
    )
}

impl UserOperationV06 {
    /// The EntryPoint v0.6 userOpHash.
    pub fn hash(&self, entry_point: Address, chain_id: u64) -> B256 {
        let inner = (
            self.sender,
            self.nonce,
            hash_bytes(&self.init_code),
            hash_bytes(&self.call_data),
            self.call_gas_limit,
            self.verification_gas_limit,
            self.pre_verification_gas,
            self.max_fee_per_gas,
            self.max_priority_fee_per_gas,
            hash_bytes(&self.paymaster_and_data),
        )
            .abi_encode();
        wrap(keccak256(inner), entry_point, U256::from(chain_id))
    }
}

impl UserOperationV07 {
    /// `abi.encode` of the packed fields with the given `initCode` hash (what v0.7 hashes inside,
    /// and v0.8 after its type hash).
    fn packed_fields_hash_input(&self, init_code_hash: B256) -> (Address, U256, B256, B256, B256, U256, B256, B256) {
        (
            self.sender,
            self.nonce,
            init_code_hash,
            hash_bytes(&self.call_data),
            self.account_gas_limits(),
            self.pre_verification_gas,
            self.gas_fees(),
            hash_bytes(&self.paymaster_and_data()),
        )
    }

    fn v07_formula(&self, entry_point: Address, chain_id: U256) -> B256 {
        let inner = self
            .packed_fields_hash_input(hash_bytes(&self.init_code()))
            .abi_encode();
        wrap(keccak256(inner), entry_point, chain_id)
    }

    /// The EntryPoint v0.7 userOpHash (`eip7702Auth` plays no part).
    pub fn hash_v07(&self, entry_point: Address, chain_id: u64) -> B256 {
        self.v07_formula(entry_point, U256::from(chain_id))
    }

    /// The Kernel ≥ v3.2 "replayable" hash: the v0.7 formula with chain id 0, so one signature
    /// is valid on every chain. Kernel computes it itself from the packed op, whatever the
    /// EntryPoint version; `entry_point` is the EntryPoint that calls `validateUserOp`.
    pub fn replayable_hash(&self, entry_point: Address) -> B256 {
        self.v07_formula(entry_point, U256::ZERO)
    }

    /// The EntryPoint v0.8 userOpHash (EIP-712).
    ///
    /// For an EIP-7702 op (`factory` is the `0x7702` marker) the EntryPoint hashes the sender's
    /// delegate (read from its code) in place of the marker: `keccak(delegate ‖ factoryData)`.
    /// Without chain state, the delegate is taken from `eip7702Auth.address`, as viem does; with
    /// no `eip7702Auth` this returns [`UserOpError::Eip7702DelegateUnknown`] rather than a hash
    /// the EntryPoint would not compute. Use [`hash_v08_with_delegate`](Self::hash_v08_with_delegate)
    /// when the delegate is known from chain state.
    pub fn hash_v08(&self, entry_point: Address, chain_id: u64) -> Result<B256, UserOpError> {
        if !self.is_eip7702() {
            return Ok(self.hash_v08_with_init_code_hash(entry_point, chain_id, hash_bytes(&self.init_code())));
        }
        let delegate = self
            .eip7702_auth
            .as_ref()
            .map(|auth| auth.address())
            .ok_or(UserOpError::Eip7702DelegateUnknown)?;
        Ok(self.hash_v08_with_delegate(entry_point, chain_id, delegate))
    }

    /// The EntryPoint v0.8 userOpHash with the sender's EIP-7702 delegate given by the caller
    /// (e.g. read from chain state). `delegate` is used only when `factory` is the 7702 marker.
    pub fn hash_v08_with_delegate(&self, entry_point: Address, chain_id: u64, delegate: Address) -> B256 {
        let init_code_hash = match &self.factory {
            Some(f) if f.address == EIP7702_FACTORY_MARKER => keccak256([delegate.as_slice(), &f.data].concat()),
            _ => hash_bytes(&self.init_code()),
        };
        self.hash_v08_with_init_code_hash(entry_point, chain_id, init_code_hash)
    }

    fn hash_v08_with_init_code_hash(&self, entry_point: Address, chain_id: u64, init_code_hash: B256) -> B256 {
        let (sender, nonce, init, call, agl, pvg, fees, pmd) = self.packed_fields_hash_input(init_code_hash);
        let struct_hash =
            keccak256((PACKED_USEROP_TYPEHASH, sender, nonce, init, call, agl, pvg, fees, pmd).abi_encode());
        let domain = eip712_domain_separator(entry_point, chain_id);
        keccak256([&[0x19, 0x01][..], domain.as_slice(), struct_hash.as_slice()].concat())
    }
}

impl UserOperation {
    /// The userOpHash the EntryPoint at `entry_point` on chain `chain_id` computes for this op,
    /// by this op's version. Fails only for a v0.8 EIP-7702 op without `eip7702Auth` (see
    /// [`UserOperationV07::hash_v08`]).
    pub fn hash(&self, entry_point: Address, chain_id: u64) -> Result<B256, UserOpError> {
        match self {
            Self::V06(op) => Ok(op.hash(entry_point, chain_id)),
            Self::V07(op) => Ok(op.hash_v07(entry_point, chain_id)),
            Self::V08(op) => op.hash_v08(entry_point, chain_id),
        }
    }

    /// The Kernel ≥ v3.2 replayable hash (v0.7 formula, chain id 0) for v0.7/v0.8 ops; `None`
    /// for v0.6, which has no packed form (and no Kernel v3).
    pub fn replayable_hash(&self, entry_point: Address) -> Option<B256> {
        self.as_packed_form().map(|op| op.replayable_hash(entry_point))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precomputed_hashes() {
        assert_eq!(EIP712_DOMAIN_NAME_HASH, keccak256(EIP712_DOMAIN_NAME));
        assert_eq!(EIP712_DOMAIN_VERSION_HASH, keccak256(EIP712_DOMAIN_VERSION));
        assert_eq!(EMPTY_HASH, keccak256([]));
        assert_eq!(hash_bytes(&[1]), keccak256([1]));
    }

    #[test]
    fn type_hashes_match_their_strings() {
        assert_eq!(
            PACKED_USEROP_TYPEHASH,
            keccak256(
                "PackedUserOperation(address sender,uint256 nonce,bytes initCode,bytes callData,\
                 bytes32 accountGasLimits,uint256 preVerificationGas,bytes32 gasFees,\
                 bytes paymasterAndData)"
            )
        );
        assert_eq!(
            EIP712_DOMAIN_TYPEHASH,
            keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
        );
    }
}
