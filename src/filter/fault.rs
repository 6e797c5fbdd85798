//! Fault injection, compiled only into the test build (`make build-fault`, cargo feature
//! `fault-injection`): a way to make the VM fail on purpose, so that the tests and `make chaos`
//! measure what Envoy's `failure_policy` does with a crashed filter instead of assuming it. The
//! shipped module has none of this (the feature is off; `tests/faults.rs` checks that the
//! release build ignores the header).
//!
//! - at start: the VM's environment has `SESSION_GUARD_FAULT=start` → `on_configure` panics;
//! - per request: the request has `x-session-guard-fault: panic` → the filter panics while
//!   reading it, before any decision.

use crate::wire::HeaderMap;

/// The request header that makes the fault build panic.
pub const HEADER: &str = "x-session-guard-fault";

#[allow(clippy::panic)] // the point of this build
pub fn at_request(headers: &HeaderMap) {
    if headers
        .iter()
        .any(|(n, v)| n == HEADER && v == b"panic".as_slice())
    {
        panic!("session_guard: injected fault (request)");
    }
}

#[allow(clippy::panic)] // the point of this build
pub fn at_start(env: &dyn Fn(&str) -> Option<String>) {
    if env("SESSION_GUARD_FAULT").as_deref() == Some("start") {
        panic!("session_guard: injected fault (start)");
    }
}
