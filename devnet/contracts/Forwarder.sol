// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

interface ITransferFrom {
    function transferFrom(address from, address to, uint256 value) external returns (bool);
}

/// Moves value and tokens onward, for opgate's simulation tests: what an op's call data shows is
/// not what the op does.
contract Forwarder {
    /// ERC-1967's implementation slot.
    bytes32 internal constant IMPLEMENTATION_SLOT = 0x360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc;

    /// Sends what it receives on to `to`.
    function forward(address payable to) external payable {
        (bool ok,) = to.call{value: msg.value}("");
        require(ok, "Forwarder: forward failed");
    }

    /// Pulls `value` of `token` from the caller (who approved this contract) to `to`.
    function pull(address token, address to, uint256 value) external {
        require(ITransferFrom(token).transferFrom(msg.sender, to, value), "Forwarder: pull failed");
    }

    /// Always reverts.
    function fail() external pure {
        revert("Forwarder: refused");
    }

    /// UUPS: an account may upgrade to this contract (for one call, see `sweep`).
    function proxiableUUID() external pure returns (bytes32) {
        return IMPLEMENTATION_SLOT;
    }

    /// Run by delegatecall inside an account (its `upgradeToAndCall(this, sweep(...))`): puts the
    /// account's implementation `restore` back, then sends `value` of the account's ether to `to`.
    function sweep(address payable to, uint256 value, address restore) external {
        assembly {
            sstore(IMPLEMENTATION_SLOT, restore)
        }
        (bool ok,) = to.call{value: value}("");
        require(ok, "Forwarder: sweep failed");
    }
}
