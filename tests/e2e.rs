//! End-to-end tests: the `hookline` binary, a real SQLite file and real
//! receivers on 127.0.0.1, talking HTTP as users and the platform do.

#[path = "../crates/aws/tests/support/mod.rs"]
mod aws_support;
mod support;

#[path = "e2e/api.rs"]
mod api;
#[path = "e2e/aws_cli.rs"]
mod aws_cli;
#[path = "e2e/delivery.rs"]
mod delivery;
#[path = "e2e/durability.rs"]
mod durability;
#[path = "e2e/matching.rs"]
mod matching;
#[path = "e2e/security.rs"]
mod security;
