//! The end-to-end tests: the real `latch` binary, on a real socket, with real clients.
//!
#![allow(unreachable_pub)]

//! Every test starts its own server in a temporary data directory and ends with
//! [`harness::Server::finish`], which stops it and searches everything it logged for every key
//! and token the test handled.

mod database;
mod harness;

mod tcp_proxy;
mod upstream;

mod admin;
mod audit;
mod cli;
mod deploy;
mod engine;
mod face;
mod faults;
mod interop;
mod metrics;
mod replicas;
mod sts_issue;
mod tls;
