// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// A stand-in for the contract the recorded vectors call at 0xedCC53F25Bac99Ebb78D3a0012eC78Ae3e67494e,
/// whose bytecode the vectors do not carry. It has the two functions the reproducible vectors
/// (ep08-simple-account-*) call, with the storage writes and logs their recorded gas implies: a
/// balance credit and a `Transfer` for `mint`, a per-caller slot and an event for `setNumber`. The
/// tests place its runtime code at that address with anvil_setCode.
contract VectorTarget {
    mapping(address => uint256) public balanceOf;
    mapping(address => uint256) public numberOf;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event NumberSet(address indexed by, uint256 n);

    function mint(address to, uint256 value) external {
        balanceOf[to] += value;
        emit Transfer(address(0), to, value);
    }

    function setNumber(uint256 n) external {
        numberOf[msg.sender] = n;
        emit NumberSet(msg.sender, n);
    }
}
