//! On-chain (ABI) forms of a user operation, for encoding EntryPoint calls such as `handleOps`.
//!
//! Kept apart from the RPC and domain types: the ABI structs are exactly what the EntryPoint
//! contracts take, with no knowledge of JSON or of optional fields.

alloy_sol_types::sol! {
    /// EntryPoint v0.7/v0.8 `PackedUserOperation` (`interfaces/PackedUserOperation.sol`).
    #[derive(Debug, PartialEq, Eq)]
    struct PackedUserOperation {
        /// The account.
        address sender;
        /// Key (high 192 bits) ‖ sequence (low 64 bits).
        uint256 nonce;
        /// `factory ‖ factoryData`, or empty.
        bytes initCode;
        /// Calldata the EntryPoint sends to the account.
        bytes callData;
        /// `verificationGasLimit` (high 16 bytes) ‖ `callGasLimit` (low 16 bytes).
        bytes32 accountGasLimits;
        /// Gas paid on top of execution for calldata and bundle overhead.
        uint256 preVerificationGas;
        /// `maxPriorityFeePerGas` (high 16 bytes) ‖ `maxFeePerGas` (low 16 bytes).
        bytes32 gasFees;
        /// `paymaster(20) ‖ verificationGasLimit(16) ‖ postOpGasLimit(16) ‖ paymasterData`, or empty.
        bytes paymasterAndData;
        /// The account's signature (not part of the userOpHash).
        bytes signature;
    }

    /// EntryPoint v0.6 `UserOperation` (`interfaces/UserOperation.sol`).
    #[derive(Debug, PartialEq, Eq)]
    struct UserOperation {
        /// The account.
        address sender;
        /// Key (high 192 bits) ‖ sequence (low 64 bits).
        uint256 nonce;
        /// `factory ‖ factoryData`, or empty.
        bytes initCode;
        /// Calldata the EntryPoint sends to the account.
        bytes callData;
        /// Gas limit of the account call.
        uint256 callGasLimit;
        /// Gas limit of validation (and of the paymaster's validation and postOp).
        uint256 verificationGasLimit;
        /// Gas paid on top of execution for calldata and bundle overhead.
        uint256 preVerificationGas;
        /// EIP-1559 fee cap.
        uint256 maxFeePerGas;
        /// EIP-1559 priority fee cap.
        uint256 maxPriorityFeePerGas;
        /// `paymaster(20) ‖ paymasterData`, or empty.
        bytes paymasterAndData;
        /// The account's signature (not part of the userOpHash).
        bytes signature;
    }

    /// The EntryPoint v0.6 entry used by bundlers.
    interface IEntryPointV06 {
        /// Executes a batch of v0.6 user operations, paying fees to `beneficiary`.
        function handleOps(UserOperation[] calldata ops, address payable beneficiary) external;
    }

    /// The EntryPoint v0.7/v0.8 entry used by bundlers.
    interface IEntryPointV07 {
        /// Executes a batch of packed user operations, paying fees to `beneficiary`.
        function handleOps(PackedUserOperation[] calldata ops, address payable beneficiary) external;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_sol_types::SolCall;

    #[test]
    fn handle_ops_selectors() {
        // handleOps((address,uint256,bytes,bytes,uint256,uint256,uint256,uint256,uint256,bytes,bytes)[],address)
        assert_eq!(IEntryPointV06::handleOpsCall::SELECTOR, [0x1f, 0xad, 0x94, 0x8c]);
        // handleOps((address,uint256,bytes,bytes,bytes32,uint256,bytes32,bytes,bytes)[],address)
        assert_eq!(IEntryPointV07::handleOpsCall::SELECTOR, [0x76, 0x5e, 0x82, 0x7f]);
    }
}
