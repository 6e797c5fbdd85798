#!/usr/bin/env bash
# `make release`: everything a platform team adopts a release from, in dist/ (`make build` first).
#   session_guard.wasm          the module
#   session-guard.oci.tar       the OCI image (an oci-archive: a tarred OCI image layout), the
#                               Wasm image spec's compat variant that istio-agent and Envoy
#                               Gateway pull (scripts/image.sh), tagged with the version
#   session-guard.cdx.json      CycloneDX SBOM of the module's crates (cargo-cyclonedx)
#   istio/, envoy-gateway/      the manifests, the image pinned by its digest
#   RELEASE_NOTES.md            this version's CHANGELOG section
#   SHA256SUMS                  sha256 of every file above (`sha256sum -c SHA256SUMS` in dist/)
# The version is Cargo.toml's [workspace.package] version, the one the module reports.
# Inputs (optional): SESSION_GUARD_WASM (the module), DIST (default dist), RELEASE_REGISTRY
# (the registry/namespace the image is pushed to, default ghcr.io/example), RELEASE_SBOM=0
# (skip the SBOM: tests/release.rs, which has no cargo-cyclonedx).
set -euo pipefail
[ -n "${SESSION_GUARD_WASM:-}" ] && SESSION_GUARD_WASM="$(realpath -m "$SESSION_GUARD_WASM")"
[ -n "${DIST:-}" ] && DIST="$(realpath -m "$DIST")"
cd "$(dirname "$0")/.."

wasm="${SESSION_GUARD_WASM:-target/wasm32-wasip1/release/session_guard.wasm}"
dist="${DIST:-dist}"
registry="${RELEASE_REGISTRY:-ghcr.io/example}"
version="$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)"

die() { echo "release.sh: $*" >&2; exit 1; }
[ -n "$version" ] || die "no [workspace.package] version in Cargo.toml"
[ -f "$wasm" ] || die "$wasm not found; run 'make build' first"

rm -rf "$dist"
mkdir -p "$dist"
cp "$wasm" "$dist/session_guard.wasm"

# The image, tagged with the version; its digest pins the manifests.
report="$(IMAGE_ARCHIVE="$dist/session-guard.oci.tar" IMAGE_TAG="$version" \
  SESSION_GUARD_WASM="$wasm" scripts/image.sh)"
digest="$(sed -n 's/^digest: *//p' <<<"$report")"
[[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || die "image.sh printed no digest: $report"
hex="${digest#sha256:}"

# SBOM: the crates linked into the module (crates/wasm and its dependencies, for the wasm
# target, without build-time and dev dependencies).
# cargo-cyclonedx writes one file beside every workspace member's Cargo.toml: keep the
# module's (crates/wasm), remove the others. SOURCE_DATE_EPOCH fixes its timestamp.
if [ "${RELEASE_SBOM:-1}" != 0 ]; then
  sbom=session-guard.cdx
  SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-0}" cargo cyclonedx --manifest-path crates/wasm/Cargo.toml \
    --format json --spec-version 1.5 --target wasm32-wasip1 --no-build-deps \
    --override-filename "$sbom" -q
  mv crates/wasm/$sbom.json "$dist/session-guard.cdx.json"
  cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json,os,sys; [print(os.path.dirname(p["manifest_path"])) for p in json.load(sys.stdin)["packages"]]' |
    while read -r d; do rm -f "$d/$sbom.json"; done
  grep -q '"name":"session-guard"' <(tr -d ' \n' <"$dist/session-guard.cdx.json") ||
    die "the SBOM does not list the session-guard crate"
fi

# Manifests: every applied file; the module's reference pinned by digest.
mkdir -p "$dist/istio" "$dist/envoy-gateway"
for f in istio/*.yaml; do
  sed -E "s#url: oci://[^ ]*/session-guard:[^ ]*#url: oci://$registry/session-guard@$digest#" \
    "$f" >"$dist/$f"
done
for f in envoy-gateway/*.yaml; do
  sed -E -e "s#url: [^ ]*/session-guard:[^ ]*#url: $registry/session-guard@$digest#" \
    -e "s#sha256: \"0{64}\" \# placeholder#sha256: \"$hex\" \# the image digest#" \
    "$f" >"$dist/$f"
done
if grep -rq 'session-guard:[0-9]' "$dist/istio" "$dist/envoy-gateway" ||
  grep -rq '"0\{64\}"' "$dist/envoy-gateway"; then
  die "a manifest still names the image by tag or has a placeholder sha256"
fi

# Release notes: this version's CHANGELOG section ([Unreleased] for a -dev version).
heading="## \\[$version\\]"
[[ "$version" == *-dev ]] && heading="## \\[Unreleased\\]"
{
  echo "# session-guard $version"
  echo
  awk -v h="^$heading" '$0 ~ h {on=1; next} on && /^## \[/ {exit} on' CHANGELOG.md
  echo
  echo "Image: \`$registry/session-guard:$version\`, digest \`$digest\` (push it with"
  echo "\`skopeo copy --preserve-digests oci-archive:session-guard.oci.tar docker://$registry/session-guard:$version\`)."
  echo "Module: \`session_guard.wasm\`, sha256 \`$(sha256sum "$wasm" | cut -d' ' -f1)\`."
} >"$dist/RELEASE_NOTES.md"
[ "$(wc -l <"$dist/RELEASE_NOTES.md")" -gt 6 ] || die "no CHANGELOG section for $version"

(cd "$dist" && find . -type f ! -name SHA256SUMS | sed 's#^\./##' | LC_ALL=C sort |
  xargs sha256sum >SHA256SUMS && sha256sum --quiet -c SHA256SUMS)
echo "dist:    $dist ($version)"
echo "image:   $digest"
echo "wasm:    sha256:$(sha256sum "$wasm" | cut -d' ' -f1)"
