//! The EntryPoint versions opgate understands.
//!
//! The version decides the RPC field set, the packed on-chain form and the userOpHash formula,
//! and clients name it only implicitly, by the EntryPoint address they send the op to. Only the
//! canonical deployments (same address on every chain) are recognised: an op for an unknown
//! EntryPoint cannot be hashed or checked, so it is refused rather than guessed at.

use core::fmt;
use core::str::FromStr;

use alloy_primitives::{address, Address};

/// An ERC-4337 EntryPoint release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum EntryPointVersion {
    /// EntryPoint v0.6: unpacked `UserOperation` struct, `initCode`/`paymasterAndData` on the wire.
    #[serde(rename = "0.6")]
    V06,
    /// EntryPoint v0.7: `PackedUserOperation`, split factory/paymaster fields on the wire.
    #[serde(rename = "0.7")]
    V07,
    /// EntryPoint v0.8: the v0.7 forms, an EIP-712 userOpHash and EIP-7702 support.
    #[serde(rename = "0.8")]
    V08,
}

impl EntryPointVersion {
    /// All supported versions, oldest first.
    pub const ALL: [Self; 3] = [Self::V06, Self::V07, Self::V08];

    /// Canonical EntryPoint v0.6 address.
    pub const V06_ADDRESS: Address = address!("0x5FF137D4b0FDCD49DcA30c7CF57E578a026d2789");
    /// Canonical EntryPoint v0.7 address.
    pub const V07_ADDRESS: Address = address!("0x0000000071727De22E5E9d8BAf0edAc6f37da032");
    /// Canonical EntryPoint v0.8 address.
    pub const V08_ADDRESS: Address = address!("0x4337084D9E255Ff0702461CF8895CE9E3b5Ff108");

    /// The canonical address of this version's EntryPoint.
    pub const fn address(self) -> Address {
        match self {
            Self::V06 => Self::V06_ADDRESS,
            Self::V07 => Self::V07_ADDRESS,
            Self::V08 => Self::V08_ADDRESS,
        }
    }

    /// The version deployed at `entry_point`, if it is one of the canonical EntryPoints.
    pub fn from_address(entry_point: Address) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.address() == entry_point)
    }

    /// The version string used in configuration and vectors: `"0.6"`, `"0.7"` or `"0.8"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::V06 => "0.6",
            Self::V07 => "0.7",
            Self::V08 => "0.8",
        }
    }

    /// Whether operations for this version use the packed (`factory`/`paymaster` split) form.
    pub const fn is_packed(self) -> bool {
        !matches!(self, Self::V06)
    }
}

impl fmt::Display for EntryPointVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A version string other than `"0.6"`, `"0.7"` or `"0.8"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown EntryPoint version (expected 0.6, 0.7 or 0.8)")]
pub struct UnknownVersion;

impl FromStr for EntryPointVersion {
    type Err = UnknownVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or(UnknownVersion)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for v in EntryPointVersion::ALL {
            assert_eq!(EntryPointVersion::from_address(v.address()), Some(v));
            assert_eq!(v.as_str().parse::<EntryPointVersion>(), Ok(v));
            assert_eq!(serde_json::to_string(&v).ok(), Some(format!("\"{}\"", v.as_str())));
        }
        assert_eq!(EntryPointVersion::from_address(Address::ZERO), None);
        assert_eq!("v0.7".parse::<EntryPointVersion>(), Err(UnknownVersion));
    }
}
