//! opgate's integration tests: one binary, a module per area, real servers on 127.0.0.1.
#![allow(unreachable_pub)]

mod support;

mod admin;
mod binary;
mod config_file;
mod dashboards;
mod decode_cli;
mod devnet;
mod policy;
mod policy_vectors;
mod proxy;
mod sim;
