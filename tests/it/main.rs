//! opgate's integration tests: one binary, a module per area. Servers run for real on 127.0.0.1;
//! decoders run against the recorded vectors in `tests/data/vectors`.
#![allow(unreachable_pub)]

mod fixtures;
mod support;

mod admin;
mod adversarial_vectors;
mod binary;
mod browser;
mod config_file;
mod cors;
mod dashboards;
mod decode_adversarial;
mod decode_adversarial_sigs;
mod decode_cli;
mod decode_kernel_ops;
mod decode_props;
mod decode_units;
mod decode_vectors;
mod devnet;
mod hostile_clients;
mod kernel_ops;
mod lifecycle;
mod never_tricked;
mod policy;
mod policy_vectors;
mod proxy;
mod redis_topology;
mod serialized_permissions;
mod sim;
mod sim_tls;
mod sim_versions;
mod store;
mod store_cluster;
mod tenants;
mod userop_proptest;
mod userop_vectors;
