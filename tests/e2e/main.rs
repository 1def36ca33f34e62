//! The end-to-end tests: the real `latch` services, on a real socket, with real clients; in
//! this process where a test is about what they answer, as `latch serve` processes where it is
//! about signals, TLS files, the command line or `kill -9`.
//!
#![allow(unreachable_pub)]

//! Every test starts its own server in a temporary data directory and ends with
//! [`harness::Server::finish`], which stops it and searches everything it logged for every key
//! and token the test handled.

mod database;
mod harness;
mod in_process;

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
