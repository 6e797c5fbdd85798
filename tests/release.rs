//! `make release`'s dist/ (scripts/release.sh on the built module, without the SBOM, which needs
//! cargo-cyclonedx: `make release` installs it): SHA256SUMS checks, its entry for the module is
//! the built module's sha256, the image extracts (scripts/image-extract.sh, as istio-agent
//! reads it, by the version's tag) to the same bytes, the manifests pin that image's digest
//! (the istiod path of tests/common/istio accepts the pin), and the release notes are the
//! CHANGELOG's section for the Cargo.toml version.
#![cfg(test)]

mod common;

use std::path::Path;
use std::process::Command;

use common::istio::*;
use common::wasm_path;
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn make_release_writes_a_consistent_dist() {
    let version = env!("CARGO_PKG_VERSION");
    let tmp = TempDir::new("release");
    let dist = tmp.path().join("dist");
    let out = run_script(
        "scripts/release.sh",
        &[],
        &[
            ("DIST", &dist),
            ("SESSION_GUARD_WASM", &wasm_path()),
            ("RELEASE_SBOM", Path::new("0")),
        ],
    );
    assert!(out.contains(&format!("({version})")), "{out}");

    // SHA256SUMS verifies, and names the built module's hash.
    let check = Command::new("sha256sum")
        .args(["--quiet", "-c", "SHA256SUMS"])
        .current_dir(&dist)
        .status()
        .unwrap();
    assert!(check.success(), "sha256sum -c SHA256SUMS");
    let sums = std::fs::read_to_string(dist.join("SHA256SUMS")).unwrap();
    let built = std::fs::read(wasm_path()).unwrap();
    assert!(
        sums.contains(&format!("{}  session_guard.wasm\n", hex(&built))),
        "{sums}"
    );
    assert!(sums.contains("  session-guard.oci.tar\n"), "{sums}");

    // The image, read by its tag as istio-agent would, holds the same bytes.
    let pulled = tmp.path().join("pulled");
    let path = run_script(
        "scripts/image-extract.sh",
        &[
            &dist.join("session-guard.oci.tar"),
            &pulled,
            Path::new(version),
        ],
        &[],
    );
    assert_eq!(std::fs::read(path.trim()).unwrap(), built);

    // The pinned gateway manifests: their digest is the image's (build_and_pull rebuilds the
    // image from the module and compares), and every dist manifest names the image by digest.
    let te = yaml_docs(&dist.join("istio/trafficextension-gateway.yaml")).remove(0);
    let plugin = trafficextension_as_wasmplugin(&te);
    assert!(str_at(&plugin, &["spec", "url"]).contains("@sha256:"));
    build_and_pull(&plugin);
    let wp = yaml_docs(&dist.join("istio/wasmplugin-gateway.yaml")).remove(0);
    assert_eq!(wp["spec"]["url"], plugin["spec"]["url"]);
    let eep = yaml_docs(&dist.join("envoy-gateway/extension-policy.yaml")).remove(0);
    let image = &eep["spec"]["wasm"][0]["code"]["image"];
    let digest = str_at(image, &["sha256"]);
    assert!(str_at(&plugin, &["spec", "url"]).ends_with(&format!("@sha256:{digest}")));
    assert!(str_at(image, &["url"]).ends_with(&format!("@sha256:{digest}")));

    // Release notes: the CHANGELOG section of this version.
    let notes = std::fs::read_to_string(dist.join("RELEASE_NOTES.md")).unwrap();
    assert!(
        notes.starts_with(&format!("# session-guard {version}\n")),
        "{notes}"
    );
    assert!(
        notes.contains("### Added") && notes.contains(digest),
        "{notes}"
    );
    assert!(
        !notes.contains("## [0.2.0]"),
        "only this version's section: {notes}"
    );
}
