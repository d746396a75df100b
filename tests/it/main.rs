//! One integration test binary (it links once): each module drives the real
//! `minimax-dl` binary against temporary databases and, where it downloads,
//! the in-process simulator on 127.0.0.1.

mod architecture;
mod archive;
mod bad_inputs;
mod bounds;
mod bucket;
mod chaos;
mod claims;
mod cli;
mod conformance;
mod conventions;
mod copy;
mod daemon;
mod dashboard;
mod disk;
mod doctor;
mod durability;
mod engine;
mod faithful;
mod fidelity;
mod fleet;
mod listen;
mod logging;
mod mistakes;
mod permissions;
mod postgres;
mod promises;
mod props;
mod queue_contract;
mod rate;
mod reference;
mod s3_store;
mod secrets;
mod segments;
mod support;
mod task_monitoring;
mod task_props;
mod tasks;
mod url_policy;
