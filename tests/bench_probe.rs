//! `make bench`'s floor ratio compares session-guard with `perf/hostcall-probe` making "exactly
//! the host calls session-guard makes on a steady request" (`CALLS_SEQ` in perf/run.py). That
//! is only true while someone keeps the two in step; this test does: it runs the built .wasm
//! in V8 (perf/vm/run.mjs, Node) on the bench's steady request and compares the host calls it
//! made, in order, with CALLS_SEQ. It also keeps the V8 harness itself from rotting.
// Test code throughout (always true under `cargo test`): see tests/istio_manifests.rs.
#![cfg(test)]

mod common;

use std::path::Path;
use std::process::Command;

fn calls_seq_in_run_py(root: &Path) -> String {
    let src = std::fs::read_to_string(root.join("perf/run.py")).unwrap();
    let line = src
        .lines()
        .find(|l| l.starts_with("CALLS_SEQ = "))
        .expect("perf/run.py defines CALLS_SEQ");
    line.trim_start_matches("CALLS_SEQ = ")
        .trim()
        .trim_matches('"')
        .to_string()
}

/// The step names perf/hostcall-probe's `parse_steps` knows (it refuses any other name).
fn probe_steps(root: &Path) -> Vec<String> {
    let src = std::fs::read_to_string(root.join("perf/hostcall-probe/src/lib.rs")).unwrap();
    let body = src
        .split("fn parse_steps(")
        .nth(1)
        .and_then(|rest| rest.split("\n}\n").next())
        .expect("perf/hostcall-probe defines parse_steps");
    body.lines()
        .filter_map(|l| l.trim().strip_prefix('"'))
        .filter_map(|l| l.split('"').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn calls_seq_names_only_steps_the_probe_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let known = probe_steps(root);
    assert!(known.len() >= 10, "probe steps not found: {known:?}");
    for step in calls_seq_in_run_py(root).split('+') {
        assert!(
            known.iter().any(|k| k == step),
            "CALLS_SEQ step {step} is not a probe step"
        );
    }
}

#[test]
fn the_floor_probe_makes_exactly_the_filters_steady_host_calls() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let wasm = common::envoy::wasm_path();
    let out = Command::new("node")
        .arg(root.join("perf/vm/run.mjs"))
        .arg("--calls-seq")
        .arg(format!("guard={}", wasm.display()))
        .output()
        .expect("node runs (installed with `make apps-deps`)");
    assert!(
        out.status.success(),
        "perf/vm/run.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let filter = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        filter.starts_with("req_map+") && filter.ends_with("+resp_map"),
        "not a steady request's calls: {filter}"
    );
    assert_eq!(
        filter,
        calls_seq_in_run_py(root),
        "session-guard's steady host calls (left) differ from perf/run.py's CALLS_SEQ (right): \
         update CALLS_SEQ (and perf/hostcall-probe's steps if a call is new)"
    );
}
