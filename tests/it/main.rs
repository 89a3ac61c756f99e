//! Integration tests: the real `cec-exporter` binary against the in-process simulator, comparing what
//! `/metrics` says with the simulator's ground truth, exactly.

mod chaos;
mod cli;
mod deploy;
mod durable;
mod exactly_once;
mod exposition;
mod faults;
mod harness;
mod model;
mod observability;
mod tenants;
mod web;
