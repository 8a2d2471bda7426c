//! # opgate
//!
//! A policy-enforcing JSON-RPC proxy for ERC-4337 bundlers. Every bundler method passes through to
//! the upstream unchanged; `eth_sendUserOperation` goes through [`pipeline`] first.
//!
//! # Layout
//!
//! - [`app`]: wiring — builds every part from a [`config::Config`] and runs them.
//! - [`config`]: TOML → raw serde types → validated configuration; units and `${ENV}` expansion.
//! - [`chain`]: what opgate holds per served chain.
//! - [`rpc`]: HTTP server, per-chain routing, the per-call gateway, handlers, JSON-RPC error codes.
//! - [`listener`]: the client side of every listener — per-address and total connection caps,
//!   head and idle timeouts.
//! - [`relay`]: upstream bundlers — HTTP client, failover, the no-second-send rule.
//! - [`outbound`]: the HTTP(S) client the relay and the simulator share (rustls, trusted roots).
//! - [`pipeline`]: the life of an `eth_sendUserOperation`.
//! - [`learn`]: what an accepted op teaches the registry about its account.
//! - [`store`]: usage counters, reservations, revocations and the permission registry (memory or
//!   Redis).
//! - [`telemetry`]: Prometheus metrics and tracing.
//! - [`userop`]: UserOperation v0.6/v0.7/v0.8 wire and domain types, packing, userOpHash.
//! - [`decode`]: Kernel nonce, calls, permission signatures, enable data, policies, initCode.
//! - [`sim`]: revm simulation of an op through the real EntryPoint against the node's state.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod admin;
pub mod app;
pub mod chain;
pub mod clock;
pub mod config;
pub mod decode;
pub mod explain;
pub mod human;
pub mod learn;
pub mod listener;
pub mod outbound;
pub mod pipeline;
pub mod policy;
pub mod registry;
pub mod relay;
pub mod rpc;
pub mod session_state;
pub mod sim;
pub mod store;
pub mod telemetry;
pub mod tenants;
pub mod userop;
