#!/usr/bin/env bash
# Usage: scripts/image-extract.sh ARCHIVE OUTDIR [TAG]
# Takes plugin.wasm back out of an OCI image (an oci-archive tar, or an OCI layout directory)
# the way istio-agent does once it has pulled the image (istio pkg/wasm/imagefetcher.go):
# index.json -> manifest -> LAST layer -> gunzip + untar -> first entry named plugin.wasm.
# Like a registry client it checks every blob it reads against its digest and size.
# Writes OUTDIR/plugin.wasm and prints its path. TAG picks a manifest by its
# org.opencontainers.image.ref.name when the index holds more than one.
# Needs only python3 (standard library), so tests can use it on any machine.
set -euo pipefail
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 ARCHIVE OUTDIR [TAG]" >&2
  exit 2
fi
exec python3 - "$@" <<'PY'
import gzip, hashlib, io, json, os, re, sys, tarfile

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"  # the "oci" variant

archive, outdir = sys.argv[1], sys.argv[2]
tag = sys.argv[3] if len(sys.argv) > 3 else None

def fail(msg):
    sys.exit(f"image-extract.sh: {msg}")

if os.path.isdir(archive):
    def read(name):
        try:
            with open(os.path.join(archive, name), "rb") as f:
                return f.read()
        except OSError:
            fail(f"{name} missing from {archive}")
else:
    try:
        tf = tarfile.open(archive)
    except (OSError, tarfile.TarError) as e:
        fail(f"cannot open {archive}: {e}")
    entries = {os.path.normpath(m.name): m for m in tf.getmembers() if m.isfile()}
    def read(name):
        m = entries.get(name)
        if m is None:
            fail(f"{name} missing from {archive}")
        return tf.extractfile(m).read()

def blob(desc):
    digest = desc.get("digest", "")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        fail(f"unsupported digest {digest!r}")
    data = read("blobs/sha256/" + digest[7:])
    if hashlib.sha256(data).hexdigest() != digest[7:]:
        fail(f"blob {digest} does not match its digest")
    if len(data) != desc.get("size"):
        fail(f"blob {digest} is {len(data)} bytes, descriptor says {desc.get('size')}")
    return data

layout = json.loads(read("oci-layout"))
if layout.get("imageLayoutVersion") != "1.0.0":
    fail(f"unsupported oci-layout {layout}")
manifests = json.loads(read("index.json")).get("manifests", [])
ref = lambda d: (d.get("annotations") or {}).get("org.opencontainers.image.ref.name")
chosen = [d for d in manifests if tag is None or ref(d) == tag]
if len(chosen) != 1:
    fail(f"need exactly one manifest{' tagged ' + tag if tag else ''}; index has tags "
         f"{[ref(d) for d in manifests]}")
desc = chosen[0]
if desc.get("mediaType") in (OCI_INDEX, DOCKER_LIST):
    fail("multi-platform index: istio-agent would pick linux/amd64; push a single image instead")
manifest = json.loads(blob(desc))
layers = manifest.get("layers") or []
if not layers:
    fail("manifest has no layers")

def untar_plugin(layer):
    try:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layer)))) as t:
            for m in t:
                if os.path.basename(m.name) == "plugin.wasm":
                    if not m.isfile():
                        fail("plugin.wasm in the layer is not a regular file")
                    return t.extractfile(m).read()
    except (OSError, EOFError, tarfile.TarError) as e:
        fail(f"layer {layer['digest']} is not a tar.gz: {e}")
    fail("plugin.wasm not found in the layer")

last = layers[-1]
if manifest.get("mediaType") == DOCKER_MANIFEST:
    if last.get("mediaType") != DOCKER_LAYER:
        fail(f"docker image: last layer is {last.get('mediaType')}, expected {DOCKER_LAYER}")
    variant, wasm = "compat (docker)", untar_plugin(last)
elif last.get("mediaType") == OCI_LAYER:
    variant, wasm = "compat", untar_plugin(last)
elif len(layers) == 2 and any(l.get("mediaType") == WASM_LAYER for l in layers):
    variant, wasm = "oci", blob(next(l for l in layers if l.get("mediaType") == WASM_LAYER))
else:
    fail(f"neither compat nor oci variant (layers: {[l.get('mediaType') for l in layers]})")

if wasm[:4] != b"\0asm":
    fail("plugin.wasm is not a wasm module")
os.makedirs(outdir, exist_ok=True)
path = os.path.join(outdir, "plugin.wasm")
with open(path + ".tmp", "wb") as f:
    f.write(wasm)
os.replace(path + ".tmp", path)
print(f"{path} ({variant} variant, manifest {desc['digest']}, "
      f"{len(wasm)} bytes)", file=sys.stderr)
print(path)
PY
