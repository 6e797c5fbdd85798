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
