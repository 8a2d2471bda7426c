// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// The read side of a Kernel v3 account (kernel-v3.md §2.4) — the same functions, return types
/// and ERC-1967 implementation slot — with setters that stand in for the owner's ops, so tests can
/// change an account "around opgate" and see opgate read it from the node. It validates nothing.
contract KernelAccountState {
    struct ValidationConfig {
        uint32 nonce;
        address hook;
    }

    struct PermissionConfig {
        bytes2 permissionFlag;
        address signer;
        bytes22[] policyData;
    }

    /// `keccak256("eip1967.proxy.implementation") - 1`.
    bytes32 internal constant IMPLEMENTATION_SLOT = 0x360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc;

    bytes21 public rootValidator;
    uint32 public currentNonce;
    uint32 public validNonceFrom;
    string public accountId;
    mapping(bytes21 => ValidationConfig) internal validations;
    mapping(bytes4 => PermissionConfig) internal permissions;
    mapping(bytes21 => mapping(bytes4 => bool)) public isAllowedSelector;

    function validationConfig(bytes21 vId) external view returns (uint32 nonce, address hook) {
        ValidationConfig storage c = validations[vId];
        return (c.nonce, c.hook);
    }

    function permissionConfig(bytes4 pId)
        external
        view
        returns (bytes2 permissionFlag, address signer, bytes22[] memory policyData)
    {
        PermissionConfig storage c = permissions[pId];
        return (c.permissionFlag, c.signer, c.policyData);
    }

    /// `initialize`: the root validator, `currentNonce` 1, the release's `accountId` and
    /// implementation.
    function setUp(bytes21 root, string calldata id, address implementation) external {
        rootValidator = root;
        currentNonce = 1;
        accountId = id;
        assembly {
            sstore(IMPLEMENTATION_SLOT, implementation)
        }
    }

    /// `changeRootValidator`.
    function setRoot(bytes21 root) external {
        rootValidator = root;
    }

    /// `invalidateNonce(nonce)`: `currentNonce` and `validNonceFrom` move to it.
    function invalidateNonce(uint32 nonce) external {
        currentNonce = nonce;
        validNonceFrom = nonce;
    }

    /// An enable op or `installValidations`: a permission with its config, signer, policies and one
    /// granted selector.
    function installPermission(
        bytes4 pId,
        uint32 nonce,
        address hook,
        address signer,
        bytes22[] calldata policyData,
        bytes4 selector
    ) external {
        bytes21 vId = bytes21(abi.encodePacked(bytes1(0x02), pId, bytes16(0)));
        validations[vId] = ValidationConfig(nonce, hook == address(0) ? address(1) : hook);
        PermissionConfig storage c = permissions[pId];
        c.permissionFlag = bytes2(0);
        c.signer = signer;
        delete c.policyData;
        for (uint256 i = 0; i < policyData.length; i++) {
            c.policyData.push(policyData[i]);
        }
        isAllowedSelector[vId][selector] = true;
    }

    /// `uninstallValidation` of a permission.
    function uninstallPermission(bytes4 pId) external {
        bytes21 vId = bytes21(abi.encodePacked(bytes1(0x02), pId, bytes16(0)));
        delete validations[vId];
        delete permissions[pId];
    }

    /// A validator module installed (or, with hook 0, uninstalled).
    function setValidation(bytes21 vId, uint32 nonce, address hook) external {
        validations[vId] = ValidationConfig(nonce, hook);
    }

    /// `grantAccess`.
    function grantAccess(bytes21 vId, bytes4 selector, bool allow) external {
        isAllowedSelector[vId][selector] = allow;
    }
}

/// The ECDSA validators' storage (kernel-v3.md §5.2): `ecdsaValidatorStorage(account)` is the
/// account's root owner.
contract EcdsaValidatorState {
    mapping(address => address) public ecdsaValidatorStorage;

    function setOwner(address account, address owner) external {
        ecdsaValidatorStorage[account] = owner;
    }
}

/// The ECDSA signer's storage (kernel-v3.md §4.6): `signer(id, wallet)` is a permission's session
/// key.
contract EcdsaSignerState {
    mapping(bytes32 => mapping(address => address)) public signer;

    function setSigner(bytes32 id, address wallet, address key) external {
        signer[id][wallet] = key;
    }
}
