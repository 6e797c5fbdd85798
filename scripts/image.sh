#!/usr/bin/env bash
# Package the built filter as an OCI image archive that Istio's WasmPlugin can pull once pushed
# (`skopeo copy oci-archive:target/session-guard.oci.tar docker://REGISTRY/session-guard:TAG`).
# No Docker daemon: the image layout is written with tar, gzip and sha256sum, then checked with
# scripts/image-extract.sh (istio-agent's reading of it) and, when installed, umoci and skopeo.
#
# Format: the Wasm image spec's "compat" variant, which istio-agent tries first
# (istio pkg/wasm/imagefetcher.go): an OCI image manifest whose last (here only) layer is
# application/vnd.oci.image.layer.v1.tar+gzip holding `plugin.wasm` at its root, annotated
# module.wasm.image/variant=compat. Unlike the "oci" variant (two layers with custom
# media types) every registry, skopeo, crane and docker handle it like any image.
#
# Reproducible: same wasm bytes, same image digest (fixed mtime/owner/order, `gzip -n`, the tag
# lives only in index.json), so re-running is idempotent and a digest pin stays valid until the
# wasm changes. Inputs (all optional):
#   SESSION_GUARD_WASM  wasm to package   (default target/wasm32-wasip1/release/session_guard.wasm)
#   IMAGE_ARCHIVE       archive to write  (default target/session-guard.oci.tar)
#   IMAGE_TAG           tag in index.json (default: version in Cargo.toml)
#   SOURCE_DATE_EPOCH   layer file mtime  (default 0)
set -euo pipefail
# Paths given in the environment are relative to the caller's directory; defaults to the repo.
[ -n "${SESSION_GUARD_WASM:-}" ] && SESSION_GUARD_WASM="$(realpath -m "$SESSION_GUARD_WASM")"
[ -n "${IMAGE_ARCHIVE:-}" ] && IMAGE_ARCHIVE="$(realpath -m "$IMAGE_ARCHIVE")"
cd "$(dirname "$0")/.."

wasm="${SESSION_GUARD_WASM:-target/wasm32-wasip1/release/session_guard.wasm}"
out="${IMAGE_ARCHIVE:-target/session-guard.oci.tar}"
tag="${IMAGE_TAG:-$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n1)}"
epoch="${SOURCE_DATE_EPOCH:-0}"

die() { echo "image.sh: $*" >&2; exit 1; }
[ -f "$wasm" ] || die "$wasm not found; run 'make build' first"
[ "$(head -c4 "$wasm" | od -An -tx1 | tr -d ' \n')" = 0061736d ] || die "$wasm is not a wasm module"
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$ ]] || die "invalid image tag '$tag' (IMAGE_TAG or Cargo.toml version)"

mkdir -p "$(dirname "$out")"
work="$(mktemp -d "$(dirname "$out")/.image.XXXXXX")"
trap 'rm -rf "$work"' EXIT
layout="$work/layout"
mkdir -p "$work/layer" "$layout/blobs/sha256"

# Deterministic tar: no user names, no local mtimes or umask in it.
dtar() {
  tar --format=ustar --sort=name --owner=0 --group=0 --numeric-owner \
    --mtime="@$epoch" --mode='u=rwX,go=rX' "$@"
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
# blob FILE -> stores FILE as a content-addressed blob, prints "<hex> <size>"
blob() {
  local h
  h="$(sha "$1")"
  mv -f "$1" "$layout/blobs/sha256/$h"
  echo "$h $(stat -c %s "$layout/blobs/sha256/$h")"
}

# Layer: plugin.wasm at the root, as istio-agent looks it up (basename match, first hit).
cp "$wasm" "$work/layer/plugin.wasm"
chmod 0644 "$work/layer/plugin.wasm"
dtar -C "$work/layer" -cf "$work/layer.tar" plugin.wasm
diff_id="$(sha "$work/layer.tar")"
gzip -9 -n -c "$work/layer.tar" >"$work/layer.tar.gz"
b="$(blob "$work/layer.tar.gz")"; read -r layer_hex layer_size <<<"$b"

# Minimal image config: the platform is what the module is built for; nothing runs it as a
# container, and istio-agent reads only the layers.
printf '{"architecture":"wasm","os":"wasip1","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$diff_id" >"$work/config.json"
b="$(blob "$work/config.json")"; read -r config_hex config_size <<<"$b"

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'\
'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},'\
'"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}],'\
'"annotations":{"module.wasm.image/variant":"compat","org.opencontainers.image.title":"session-guard"}}' \
  "$config_hex" "$config_size" "$layer_hex" "$layer_size" >"$work/manifest.json"
b="$(blob "$work/manifest.json")"; read -r manifest_hex manifest_size <<<"$b"

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",'\
'"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,'\
'"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
  "$manifest_hex" "$manifest_size" "$tag" >"$layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

# oci-archive: a tar of the layout directory, as skopeo/podman read it.
dtar -C "$layout" -cf "$work/archive.tar" oci-layout index.json blobs

# --- verify before publishing the archive ---------------------------------------------------
# 1. istio-agent's path: index.json -> manifest -> last layer -> untar -> plugin.wasm.
scripts/image-extract.sh "$work/archive.tar" "$work/check" >/dev/null 2>"$work/extract.log" ||
  { cat "$work/extract.log" >&2; die "image-extract.sh cannot read the archive"; }
cmp -s "$wasm" "$work/check/plugin.wasm" || die "plugin.wasm in the archive differs from $wasm"
# 2. Independent OCI tools, when present (make image installs them).
if command -v skopeo >/dev/null; then
  skopeo inspect --raw "oci-archive:$work/archive.tar" >"$work/raw.json"
  [ "$(sha "$work/raw.json")" = "$manifest_hex" ] || die "skopeo reads a different manifest"
  # Copying re-reads every blob and checks it against its digest.
  skopeo copy --quiet "oci-archive:$work/archive.tar" "oci:$work/copy:$tag" >/dev/null
  if command -v umoci >/dev/null; then
    umoci raw unpack --rootless --image "$work/copy:$tag" "$work/rootfs" 2>"$work/umoci.log" ||
      { cat "$work/umoci.log" >&2; die "umoci cannot unpack the image"; }
    cmp -s "$wasm" "$work/rootfs/plugin.wasm" || die "umoci unpacks a different plugin.wasm"
  fi
else
  echo "image.sh: skopeo not installed; checked with image-extract.sh only" >&2
fi

mv -f "$work/archive.tar" "$out"
echo "archive: $out"
echo "tag:     $tag"
echo "digest:  sha256:$manifest_hex"
echo "wasm:    sha256:$(sha "$wasm") ($(stat -c %s "$wasm") bytes)"
