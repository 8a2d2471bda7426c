//! # opgate
//!
//! A policy-enforcing JSON-RPC proxy for ERC-4337 bundlers.
//!
//! # Layout
//!
//! - [`userop`]: UserOperation v0.6/v0.7/v0.8 wire and domain types, packing, userOpHash.
//! - [`decode`]: Kernel nonce, calls, permission signatures, enable data, policies, initCode.
#![forbid(unsafe_code)]

pub mod decode;
pub mod userop;
