//! End-to-end tests: the `hookline` binary, a real SQLite file and real
//! receivers on 127.0.0.1, talking HTTP as users and the platform do.

mod support;

/// One module per area, in `tests/e2e/`.
mod e2e {
    mod api;
    mod cli;
    mod dashboard;
    mod delivery;
    mod durability;
    mod fairness;
    mod hardening;
    mod health;
    mod matching;
    mod metrics;
    mod options;
    mod security;
    mod signals;
    mod surfaces;
    mod traces;
}
