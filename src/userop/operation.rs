//! The domain form of a user operation: what the op means, independent of its JSON.
//!
//! Conversions from the wire types enforce what the on-chain forms can hold (gas fields of the
//! packed form are `uint128`, `initCode`/`paymasterAndData` must start with a whole address), so a
//! value of these types can always be packed and hashed exactly as the EntryPoint will.

use alloy_primitives::{address, Address, Bytes, B256, U256};
use serde::ser::{Serialize, Serializer};

use super::abi;
use super::wire::{Eip7702Auth, ExtraFields, RpcUserOperationV06, RpcUserOperationV07};
use super::{EntryPointVersion, FieldError, UserOpError};

/// The `factory` value that marks an EIP-7702 operation (EntryPoint v0.8): `0x7702` right-padded
/// to 20 bytes. The sender is an EOA whose code delegates to another contract; nothing is
/// deployed.
pub const EIP7702_FACTORY_MARKER: Address = address!("0x7702000000000000000000000000000000000000");

/// Offset of the paymaster verification gas limit in packed `paymasterAndData`.
pub const PAYMASTER_VALIDATION_GAS_OFFSET: usize = 20;
/// Offset of the paymaster postOp gas limit in packed `paymasterAndData`.
pub const PAYMASTER_POSTOP_GAS_OFFSET: usize = 36;
/// Offset of the paymaster data in packed `paymasterAndData`.
pub const PAYMASTER_DATA_OFFSET: usize = 52;

/// The account factory of an op that deploys its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factory {
    /// Factory contract (or [`EIP7702_FACTORY_MARKER`]).
    pub address: Address,
    /// Calldata for the factory (for a 7702 op: calldata for the account's initialisation).
    pub data: Bytes,
}

/// The paymaster of a v0.7/v0.8 op and its gas limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paymaster {
    /// Paymaster contract.
    pub address: Address,
    /// Gas limit of `validatePaymasterUserOp`.
    pub verification_gas_limit: u128,
    /// Gas limit of `postOp`.
    pub post_op_gas_limit: u128,
    /// Data passed to the paymaster.
    pub data: Bytes,
}

/// A user operation for EntryPoint v0.6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserOperationV06 {
    /// The account.
    pub sender: Address,
    /// Key (high 192 bits) ‖ sequence (low 64 bits).
    pub nonce: U256,
    /// `factory(20) ‖ factoryData`, or empty.
    pub init_code: Bytes,
    /// Calldata the EntryPoint sends to the account.
    pub call_data: Bytes,
    /// Gas limit of the account call.
    pub call_gas_limit: U256,
    /// Gas limit of validation (also of the paymaster's validation and postOp in v0.6).
    pub verification_gas_limit: U256,
    /// Gas paid on top of execution.
    pub pre_verification_gas: U256,
    /// EIP-1559 fee cap.
    pub max_fee_per_gas: U256,
    /// EIP-1559 priority fee cap.
    pub max_priority_fee_per_gas: U256,
    /// `paymaster(20) ‖ paymasterData`, or empty.
    pub paymaster_and_data: Bytes,
    /// The account's signature.
    pub signature: Bytes,
    /// RPC members the decoder does not interpret.
    pub extra: ExtraFields,
}

/// A user operation for EntryPoint v0.7 or v0.8 (they share the RPC and packed forms and differ
/// only in how the userOpHash is computed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserOperationV07 {
    /// The account.
    pub sender: Address,
    /// Key (high 192 bits) ‖ sequence (low 64 bits).
    pub nonce: U256,
    /// Factory and its calldata when the op deploys the account (or is an EIP-7702 op).
    pub factory: Option<Factory>,
    /// Calldata the EntryPoint sends to the account.
    pub call_data: Bytes,
    /// Gas limit of the account call.
    pub call_gas_limit: u128,
    /// Gas limit of the account's validation (and deployment).
    pub verification_gas_limit: u128,
    /// Gas paid on top of execution.
    pub pre_verification_gas: U256,
    /// EIP-1559 fee cap.
    pub max_fee_per_gas: u128,
    /// EIP-1559 priority fee cap.
    pub max_priority_fee_per_gas: u128,
    /// Paymaster, its gas limits and data, when the op is sponsored.
    pub paymaster: Option<Paymaster>,
    /// The account's signature.
    pub signature: Bytes,
    /// The `eip7702Auth` member, when sent.
    pub eip7702_auth: Option<Eip7702Auth>,
    /// RPC members the decoder does not interpret.
    pub extra: ExtraFields,
}

/// A decoded user operation of any supported EntryPoint version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserOperation {
    /// For EntryPoint v0.6.
    V06(UserOperationV06),
    /// For EntryPoint v0.7.
    V07(UserOperationV07),
    /// For EntryPoint v0.8.
    V08(UserOperationV07),
}

fn check_u128(field: &'static str, value: U256) -> Result<u128, UserOpError> {
    u128::try_from(value).map_err(|_| UserOpError::invalid(field, FieldError::Overflow { bits: 128 }))
}

/// Empty, or at least an address long.
fn check_address_prefixed(field: &'static str, bytes: &Bytes) -> Result<(), UserOpError> {
    if !bytes.is_empty() && bytes.len() < 20 {
        return Err(UserOpError::invalid(
            field,
            FieldError::TooShort {
                min: 20,
                actual: bytes.len(),
            },
        ));
    }
    Ok(())
}

/// The address at the start of `bytes`, if it is at least 20 bytes long.
fn leading_address(bytes: &[u8]) -> Option<Address> {
    bytes.get(..20).map(Address::from_slice)
}

/// `high ‖ low` as one 32-byte word.
fn pack_u128s(high: u128, low: u128) -> B256 {
    let mut word = [0u8; 32];
    word[..16].copy_from_slice(&high.to_be_bytes());
    word[16..].copy_from_slice(&low.to_be_bytes());
    B256::from(word)
}

/// The two halves of a 32-byte word.
fn unpack_u128s(word: B256) -> (u128, u128) {
    let mut high = [0u8; 16];
    let mut low = [0u8; 16];
    high.copy_from_slice(&word[..16]);
    low.copy_from_slice(&word[16..]);
    (u128::from_be_bytes(high), u128::from_be_bytes(low))
}

fn be_u128(bytes: &[u8]) -> u128 {
    let mut out = [0u8; 16];
    out.copy_from_slice(bytes);
    u128::from_be_bytes(out)
}

impl TryFrom<RpcUserOperationV06> for UserOperationV06 {
    type Error = UserOpError;

    /// Checks that `initCode` and `paymasterAndData` are empty or start with a whole address
    /// (the EntryPoint reverts with AA93-style errors otherwise).
    fn try_from(op: RpcUserOperationV06) -> Result<Self, UserOpError> {
        check_address_prefixed("initCode", &op.init_code)?;
        check_address_prefixed("paymasterAndData", &op.paymaster_and_data)?;
        Ok(Self {
            sender: op.sender,
            nonce: op.nonce,
            init_code: op.init_code,
            call_data: op.call_data,
            call_gas_limit: op.call_gas_limit,
            verification_gas_limit: op.verification_gas_limit,
            pre_verification_gas: op.pre_verification_gas,
            max_fee_per_gas: op.max_fee_per_gas,
            max_priority_fee_per_gas: op.max_priority_fee_per_gas,
            paymaster_and_data: op.paymaster_and_data,
            signature: op.signature,
            extra: op.extra,
        })
    }
}

impl From<&UserOperationV06> for RpcUserOperationV06 {
    fn from(op: &UserOperationV06) -> Self {
        Self {
            sender: op.sender,
            nonce: op.nonce,
            init_code: op.init_code.clone(),
            call_data: op.call_data.clone(),
            call_gas_limit: op.call_gas_limit,
            verification_gas_limit: op.verification_gas_limit,
            pre_verification_gas: op.pre_verification_gas,
            max_fee_per_gas: op.max_fee_per_gas,
            max_priority_fee_per_gas: op.max_priority_fee_per_gas,
            paymaster_and_data: op.paymaster_and_data.clone(),
            signature: op.signature.clone(),
            extra: op.extra.clone(),
        }
    }
}

impl TryFrom<RpcUserOperationV07> for UserOperationV07 {
    type Error = UserOpError;

    /// Range-checks the gas fields that the packed form holds in 16 bytes. `factoryData` without
    /// `factory`, and paymaster fields without `paymaster`, are dropped: they are not part of the
    /// packed op the EntryPoint sees (bundlers pack the same way). A paymaster's missing gas limits
    /// and data default to zero and empty, as in viem's packing.
    fn try_from(op: RpcUserOperationV07) -> Result<Self, UserOpError> {
        let call_gas_limit = check_u128("callGasLimit", op.call_gas_limit)?;
        let verification_gas_limit = check_u128("verificationGasLimit", op.verification_gas_limit)?;
        let max_fee_per_gas = check_u128("maxFeePerGas", op.max_fee_per_gas)?;
        let max_priority_fee_per_gas = check_u128("maxPriorityFeePerGas", op.max_priority_fee_per_gas)?;
        let pm_verification = op
            .paymaster_verification_gas_limit
            .map(|v| check_u128("paymasterVerificationGasLimit", v))
            .transpose()?;
        let pm_post_op = op
            .paymaster_post_op_gas_limit
            .map(|v| check_u128("paymasterPostOpGasLimit", v))
            .transpose()?;
        Ok(Self {
            sender: op.sender,
            nonce: op.nonce,
            factory: op.factory.map(|address| Factory {
                address,
                data: op.factory_data.unwrap_or_default(),
            }),
            call_data: op.call_data,
            call_gas_limit,
            verification_gas_limit,
            pre_verification_gas: op.pre_verification_gas,
            max_fee_per_gas,
            max_priority_fee_per_gas,
            paymaster: op.paymaster.map(|address| Paymaster {
                address,
                verification_gas_limit: pm_verification.unwrap_or_default(),
                post_op_gas_limit: pm_post_op.unwrap_or_default(),
                data: op.paymaster_data.unwrap_or_default(),
            }),
            signature: op.signature,
            eip7702_auth: op.eip7702_auth,
            extra: op.extra,
        })
    }
}

impl From<&UserOperationV07> for RpcUserOperationV07 {
    fn from(op: &UserOperationV07) -> Self {
        let pm = op.paymaster.as_ref();
        Self {
            sender: op.sender,
            nonce: op.nonce,
            factory: op.factory.as_ref().map(|f| f.address),
            factory_data: op.factory.as_ref().map(|f| f.data.clone()),
            call_data: op.call_data.clone(),
            call_gas_limit: U256::from(op.call_gas_limit),
            verification_gas_limit: U256::from(op.verification_gas_limit),
            pre_verification_gas: op.pre_verification_gas,
            max_fee_per_gas: U256::from(op.max_fee_per_gas),
            max_priority_fee_per_gas: U256::from(op.max_priority_fee_per_gas),
            paymaster: pm.map(|p| p.address),
            paymaster_verification_gas_limit: pm.map(|p| U256::from(p.verification_gas_limit)),
            paymaster_post_op_gas_limit: pm.map(|p| U256::from(p.post_op_gas_limit)),
            paymaster_data: pm.map(|p| p.data.clone()),
            signature: op.signature.clone(),
            eip7702_auth: op.eip7702_auth.clone(),
            extra: op.extra.clone(),
        }
    }
}

impl UserOperationV06 {
    /// The factory: the first 20 bytes of `initCode`, if any.
    pub fn factory(&self) -> Option<Address> {
        leading_address(&self.init_code)
    }

    /// The paymaster: the first 20 bytes of `paymasterAndData`, if any.
    pub fn paymaster(&self) -> Option<Address> {
        leading_address(&self.paymaster_and_data)
    }

    /// The ABI struct the v0.6 EntryPoint takes.
    pub fn to_abi(&self) -> abi::UserOperation {
        abi::UserOperation {
            sender: self.sender,
            nonce: self.nonce,
            initCode: self.init_code.clone(),
            callData: self.call_data.clone(),
            callGasLimit: self.call_gas_limit,
            verificationGasLimit: self.verification_gas_limit,
            preVerificationGas: self.pre_verification_gas,
            maxFeePerGas: self.max_fee_per_gas,
            maxPriorityFeePerGas: self.max_priority_fee_per_gas,
            paymasterAndData: self.paymaster_and_data.clone(),
            signature: self.signature.clone(),
        }
    }

    /// Reads the ABI struct back (no RPC extras, which the ABI form doesn't carry).
    pub fn from_abi(op: &abi::UserOperation) -> Result<Self, UserOpError> {
        check_address_prefixed("initCode", &op.initCode)?;
        check_address_prefixed("paymasterAndData", &op.paymasterAndData)?;
        Ok(Self {
            sender: op.sender,
            nonce: op.nonce,
            init_code: op.initCode.clone(),
            call_data: op.callData.clone(),
            call_gas_limit: op.callGasLimit,
            verification_gas_limit: op.verificationGasLimit,
            pre_verification_gas: op.preVerificationGas,
            max_fee_per_gas: op.maxFeePerGas,
            max_priority_fee_per_gas: op.maxPriorityFeePerGas,
            paymaster_and_data: op.paymasterAndData.clone(),
            signature: op.signature.clone(),
            extra: ExtraFields::default(),
        })
    }
}

impl UserOperationV07 {
    /// Packed `initCode`: `factory ‖ factoryData`, or empty.
    pub fn init_code(&self) -> Bytes {
        match &self.factory {
            Some(f) => [f.address.as_slice(), &f.data].concat().into(),
            None => Bytes::new(),
        }
    }

    /// Whether `factory` is the EIP-7702 marker.
    pub fn is_eip7702(&self) -> bool {
        self.factory
            .as_ref()
            .is_some_and(|f| f.address == EIP7702_FACTORY_MARKER)
    }

    /// Packed `accountGasLimits`: `verificationGasLimit` (high 16 bytes) ‖ `callGasLimit` (low 16).
    pub fn account_gas_limits(&self) -> B256 {
        pack_u128s(self.verification_gas_limit, self.call_gas_limit)
    }

    /// Packed `gasFees`: `maxPriorityFeePerGas` (high 16 bytes) ‖ `maxFeePerGas` (low 16).
    pub fn gas_fees(&self) -> B256 {
        pack_u128s(self.max_priority_fee_per_gas, self.max_fee_per_gas)
    }

    /// Packed `paymasterAndData`:
    /// `paymaster(20) ‖ verificationGasLimit(16) ‖ postOpGasLimit(16) ‖ paymasterData`, or empty.
    pub fn paymaster_and_data(&self) -> Bytes {
        match &self.paymaster {
            Some(p) => [
                p.address.as_slice(),
                &p.verification_gas_limit.to_be_bytes(),
                &p.post_op_gas_limit.to_be_bytes(),
                &p.data,
            ]
            .concat()
            .into(),
            None => Bytes::new(),
        }
    }

    /// The `PackedUserOperation` the v0.7/v0.8 EntryPoint takes.
    pub fn to_packed(&self) -> abi::PackedUserOperation {
        abi::PackedUserOperation {
            sender: self.sender,
            nonce: self.nonce,
            initCode: self.init_code(),
            callData: self.call_data.clone(),
            accountGasLimits: self.account_gas_limits(),
            preVerificationGas: self.pre_verification_gas,
            gasFees: self.gas_fees(),
            paymasterAndData: self.paymaster_and_data(),
            signature: self.signature.clone(),
        }
    }

    /// Unpacks a `PackedUserOperation` (no `eip7702Auth` or RPC extras: the packed form doesn't
    /// carry them). `initCode` must be empty or hold a whole address, `paymasterAndData` empty or
    /// at least 52 bytes.
    pub fn from_packed(op: &abi::PackedUserOperation) -> Result<Self, UserOpError> {
        check_address_prefixed("initCode", &op.initCode)?;
        let factory = leading_address(&op.initCode).map(|address| Factory {
            address,
            data: op.initCode.slice(20..),
        });
        let pmd = &op.paymasterAndData;
        let paymaster = if pmd.is_empty() {
            None
        } else if pmd.len() < PAYMASTER_DATA_OFFSET {
            return Err(UserOpError::invalid(
                "paymasterAndData",
                FieldError::TooShort {
                    min: PAYMASTER_DATA_OFFSET,
                    actual: pmd.len(),
                },
            ));
        } else {
            Some(Paymaster {
                address: Address::from_slice(&pmd[..PAYMASTER_VALIDATION_GAS_OFFSET]),
                verification_gas_limit: be_u128(&pmd[PAYMASTER_VALIDATION_GAS_OFFSET..PAYMASTER_POSTOP_GAS_OFFSET]),
                post_op_gas_limit: be_u128(&pmd[PAYMASTER_POSTOP_GAS_OFFSET..PAYMASTER_DATA_OFFSET]),
                data: pmd.slice(PAYMASTER_DATA_OFFSET..),
            })
        };
        let (verification_gas_limit, call_gas_limit) = unpack_u128s(op.accountGasLimits);
        let (max_priority_fee_per_gas, max_fee_per_gas) = unpack_u128s(op.gasFees);
        Ok(Self {
            sender: op.sender,
            nonce: op.nonce,
            factory,
            call_data: op.callData.clone(),
            call_gas_limit,
            verification_gas_limit,
            pre_verification_gas: op.preVerificationGas,
            max_fee_per_gas,
            max_priority_fee_per_gas,
            paymaster,
            signature: op.signature.clone(),
            eip7702_auth: None,
            extra: ExtraFields::default(),
        })
    }
}

impl UserOperation {
    /// Wraps a v0.7-form op for `version` (`V07` or `V08`); `None` for `V06`.
    pub fn from_packed_form(op: UserOperationV07, version: EntryPointVersion) -> Option<Self> {
        match version {
            EntryPointVersion::V06 => None,
            EntryPointVersion::V07 => Some(Self::V07(op)),
            EntryPointVersion::V08 => Some(Self::V08(op)),
        }
    }

    /// The EntryPoint version this op was decoded for.
    pub fn version(&self) -> EntryPointVersion {
        match self {
            Self::V06(_) => EntryPointVersion::V06,
            Self::V07(_) => EntryPointVersion::V07,
            Self::V08(_) => EntryPointVersion::V08,
        }
    }

    /// The v0.6 op, if this is one.
    pub fn as_v06(&self) -> Option<&UserOperationV06> {
        match self {
            Self::V06(op) => Some(op),
            Self::V07(_) | Self::V08(_) => None,
        }
    }

    /// The v0.7-form op, for v0.7 and v0.8.
    pub fn as_packed_form(&self) -> Option<&UserOperationV07> {
        match self {
            Self::V06(_) => None,
            Self::V07(op) | Self::V08(op) => Some(op),
        }
    }

    /// The account.
    pub fn sender(&self) -> Address {
        match self {
            Self::V06(op) => op.sender,
            Self::V07(op) | Self::V08(op) => op.sender,
        }
    }

    /// The full 256-bit nonce (key ‖ sequence).
    pub fn nonce(&self) -> U256 {
        match self {
            Self::V06(op) => op.nonce,
            Self::V07(op) | Self::V08(op) => op.nonce,
        }
    }

    /// Calldata the EntryPoint sends to the account.
    pub fn call_data(&self) -> &Bytes {
        match self {
            Self::V06(op) => &op.call_data,
            Self::V07(op) | Self::V08(op) => &op.call_data,
        }
    }

    /// The account's signature.
    pub fn signature(&self) -> &Bytes {
        match self {
            Self::V06(op) => &op.signature,
            Self::V07(op) | Self::V08(op) => &op.signature,
        }
    }

    /// `initCode` as the EntryPoint sees it: v0.6 `initCode`, or `factory ‖ factoryData` (with
    /// the 7702 marker as is, not the delegate).
    pub fn init_code(&self) -> Bytes {
        match self {
            Self::V06(op) => op.init_code.clone(),
            Self::V07(op) | Self::V08(op) => op.init_code(),
        }
    }

    /// The factory address, if the op carries init code (may be [`EIP7702_FACTORY_MARKER`]).
    pub fn factory(&self) -> Option<Address> {
        match self {
            Self::V06(op) => op.factory(),
            Self::V07(op) | Self::V08(op) => op.factory.as_ref().map(|f| f.address),
        }
    }

    /// The factory calldata (`initCode` after the factory address); empty without a factory.
    pub fn factory_data(&self) -> Bytes {
        match self {
            Self::V06(op) if op.init_code.len() >= 20 => op.init_code.slice(20..),
            Self::V06(_) => Bytes::new(),
            Self::V07(op) | Self::V08(op) => op.factory.as_ref().map(|f| f.data.clone()).unwrap_or_default(),
        }
    }

    /// Whether this is an EIP-7702 op (`factory` is the 7702 marker; v0.7 and v0.8 form only).
    pub fn is_eip7702(&self) -> bool {
        self.as_packed_form().is_some_and(UserOperationV07::is_eip7702)
    }

    /// The `eip7702Auth` member of a v0.7/v0.8 op, if sent.
    pub fn eip7702_auth(&self) -> Option<&Eip7702Auth> {
        self.as_packed_form().and_then(|op| op.eip7702_auth.as_ref())
    }

    /// `callGasLimit`.
    pub fn call_gas_limit(&self) -> U256 {
        match self {
            Self::V06(op) => op.call_gas_limit,
            Self::V07(op) | Self::V08(op) => U256::from(op.call_gas_limit),
        }
    }

    /// `verificationGasLimit`.
    pub fn verification_gas_limit(&self) -> U256 {
        match self {
            Self::V06(op) => op.verification_gas_limit,
            Self::V07(op) | Self::V08(op) => U256::from(op.verification_gas_limit),
        }
    }

    /// `preVerificationGas`.
    pub fn pre_verification_gas(&self) -> U256 {
        match self {
            Self::V06(op) => op.pre_verification_gas,
            Self::V07(op) | Self::V08(op) => op.pre_verification_gas,
        }
    }

    /// `maxFeePerGas`.
    pub fn max_fee_per_gas(&self) -> U256 {
        match self {
            Self::V06(op) => op.max_fee_per_gas,
            Self::V07(op) | Self::V08(op) => U256::from(op.max_fee_per_gas),
        }
    }

    /// `maxPriorityFeePerGas`.
    pub fn max_priority_fee_per_gas(&self) -> U256 {
        match self {
            Self::V06(op) => op.max_priority_fee_per_gas,
            Self::V07(op) | Self::V08(op) => U256::from(op.max_priority_fee_per_gas),
        }
    }

    /// The paymaster address, if the op is sponsored.
    pub fn paymaster(&self) -> Option<Address> {
        match self {
            Self::V06(op) => op.paymaster(),
            Self::V07(op) | Self::V08(op) => op.paymaster.as_ref().map(|p| p.address),
        }
    }

    /// `paymasterVerificationGasLimit`; zero without a paymaster and for v0.6 (which has no
    /// separate paymaster limits).
    pub fn paymaster_verification_gas_limit(&self) -> U256 {
        self.as_packed_form()
            .and_then(|op| op.paymaster.as_ref())
            .map_or(U256::ZERO, |p| U256::from(p.verification_gas_limit))
    }

    /// `paymasterPostOpGasLimit`; zero without a paymaster and for v0.6.
    pub fn paymaster_post_op_gas_limit(&self) -> U256 {
        self.as_packed_form()
            .and_then(|op| op.paymaster.as_ref())
            .map_or(U256::ZERO, |p| U256::from(p.post_op_gas_limit))
    }

    /// Data for the paymaster (after the address, and in v0.7/v0.8 after the gas limits).
    pub fn paymaster_data(&self) -> Bytes {
        match self {
            Self::V06(op) if op.paymaster_and_data.len() >= 20 => op.paymaster_and_data.slice(20..),
            Self::V06(_) => Bytes::new(),
            Self::V07(op) | Self::V08(op) => op.paymaster.as_ref().map(|p| p.data.clone()).unwrap_or_default(),
        }
    }

    /// `paymasterAndData` as the EntryPoint sees it (v0.6 as sent; v0.7/v0.8 packed).
    pub fn paymaster_and_data(&self) -> Bytes {
        match self {
            Self::V06(op) => op.paymaster_and_data.clone(),
            Self::V07(op) | Self::V08(op) => op.paymaster_and_data(),
        }
    }

    /// The most this op can cost, in wei, counted the same way for every version:
    ///
    /// `(preVerificationGas + verificationGasLimit + callGasLimit + paymasterVerificationGasLimit
    /// + paymasterPostOpGasLimit) × maxFeePerGas`
    ///
    /// The paymaster limits are zero for v0.6 and for ops without a paymaster. For v0.7/v0.8 this
    /// equals the EntryPoint's required prefund; for a v0.6 op with a paymaster the EntryPoint
    /// reserves more (see [`required_prefund`](Self::required_prefund)). It is the gas the op may
    /// be charged for, whoever pays it (account or paymaster). The arithmetic saturates at
    /// `U256::MAX` instead of wrapping, so absurd values compare as "too much".
    pub fn max_gas_cost(&self) -> U256 {
        self.pre_verification_gas()
            .saturating_add(self.verification_gas_limit())
            .saturating_add(self.call_gas_limit())
            .saturating_add(self.paymaster_verification_gas_limit())
            .saturating_add(self.paymaster_post_op_gas_limit())
            .saturating_mul(self.max_fee_per_gas())
    }

    /// The prefund the EntryPoint requires before validation (`_getRequiredPrefund`), saturating
    /// instead of wrapping. v0.6: `(callGasLimit + verificationGasLimit × (3 with a paymaster,
    /// else 1) + preVerificationGas) × maxFeePerGas`; v0.7/v0.8: same as
    /// [`max_gas_cost`](Self::max_gas_cost).
    pub fn required_prefund(&self) -> U256 {
        match self {
            Self::V06(op) => {
                let mul = if op.paymaster().is_some_and(|p| p != Address::ZERO) {
                    U256::from(3)
                } else {
                    U256::from(1)
                };
                op.call_gas_limit
                    .saturating_add(op.verification_gas_limit.saturating_mul(mul))
                    .saturating_add(op.pre_verification_gas)
                    .saturating_mul(op.max_fee_per_gas)
            }
            Self::V07(_) | Self::V08(_) => self.max_gas_cost(),
        }
    }

    /// RPC members the decoder did not interpret, as sent.
    pub fn extra_fields(&self) -> &ExtraFields {
        match self {
            Self::V06(op) => &op.extra,
            Self::V07(op) | Self::V08(op) => &op.extra,
        }
    }
}

/// Serializes to the RPC form (`eth_sendUserOperation` `params[0]`): minimal hex quantities, kept
/// extra members as sent. This is a canonical re-encoding, not the client's bytes.
impl Serialize for UserOperation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::V06(op) => RpcUserOperationV06::from(op).serialize(serializer),
            Self::V07(op) | Self::V08(op) => RpcUserOperationV07::from(op).serialize(serializer),
        }
    }
}
