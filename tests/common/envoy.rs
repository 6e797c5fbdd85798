//! [`EnvoyBuilder`]: a runnable Envoy configuration from a shipped one, changed structurally.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use serde_yaml::Value;
use tokio::process::Command;

use super::{
    lossy, manifest_dir, seq_mut, unique_dir, within, Envoy, Upstream, POLL, STARTUP_TIMEOUT,
    TEST_KEY,
};

/// `ENVOY_BIN`, else `<repo>/.venv/bin/envoy`.
pub fn envoy_bin() -> PathBuf {
    std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join(".venv/bin/envoy"))
}

/// `SESSION_GUARD_WASM` (made absolute), else the `make build` output.
pub fn wasm_path() -> PathBuf {
    let p = std::env::var_os("SESSION_GUARD_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target/wasm32-wasip1/release/session_guard.wasm"));
    if p.is_absolute() {
        p
    } else {
        manifest_dir().join(p)
    }
}

/// Which build the end-to-end suite runs: `SESSION_GUARD_BUILD=native` runs every test against
/// the Envoy dynamic module (`make test-native`), anything else against the .wasm.
pub fn native() -> bool {
    std::env::var("SESSION_GUARD_BUILD").as_deref() == Ok("native")
}

/// `SESSION_GUARD_NATIVE` (made absolute), else the `make build-native` output.
pub fn native_path() -> PathBuf {
    let p = std::env::var_os("SESSION_GUARD_NATIVE")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target/release/libsession_guard.so"));
    if p.is_absolute() {
        p
    } else {
        manifest_dir().join(p)
    }
}

/// The native build's form of a shipped bootstrap: every `envoy.filters.http.wasm` filter
/// becomes the `envoy.filters.http.dynamic_modules` filter with the same JSON (what
/// envoy/sidecar-native.yaml ships), and access logs read the filter state without Wasm's
/// `wasm.` prefix. Structural, except the access-log format strings.
pub fn to_native(root: &mut Value) {
    if let Some(sr) = root.get_mut("static_resources") {
        for listener in seq_mut(sr, "listeners") {
            for chain in seq_mut(listener, "filter_chains") {
                for filter in seq_mut(chain, "filters") {
                    let Some(hcm) = filter.get_mut("typed_config") else {
                        continue;
                    };
                    for http_filter in seq_mut(hcm, "http_filters") {
                        wasm_to_dynamic_module(http_filter);
                    }
                }
            }
        }
    }
    rename_filter_state(root);
}

fn wasm_to_dynamic_module(http_filter: &mut Value) {
    if http_filter.get("name").and_then(Value::as_str) != Some("envoy.filters.http.wasm") {
        return;
    }
    let json = http_filter["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let native = format!(
        r#"
name: envoy.filters.http.dynamic_modules
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
  dynamic_module_config: {{ name: session_guard }}
  filter_name: session_guard
  filter_config:
    "@type": type.googleapis.com/google.protobuf.StringValue
    value: {}
"#,
        serde_json::to_string(&json).expect("json string")
    );
    *http_filter = serde_yaml::from_str(&native).expect("dynamic module filter");
}

fn rename_filter_state(v: &mut Value) {
    match v {
        Value::String(s) if s.contains("FILTER_STATE(wasm.session_guard.") => {
            *s = s.replace(
                "FILTER_STATE(wasm.session_guard.",
                "FILTER_STATE(session_guard.",
            );
        }
        Value::Sequence(seq) => seq.iter_mut().for_each(rename_filter_state),
        Value::Mapping(m) => m.iter_mut().for_each(|(_, v)| rename_filter_state(v)),
        _ => {}
    }
}

/// A port where nothing listens and nothing ever will while the tests run, for clusters a test
/// gives no upstream: a TCP socket bound to 127.0.0.1:0 and never put into listening state, held
/// for the life of the test process. A connection to it is refused at once (RST), and the kernel
/// hands the port to no one else while it is bound (a port bound and released could be taken by
/// another test's upstream in between, which would then receive this test's traffic).
fn dead_port() -> u16 {
    static HELD: std::sync::OnceLock<(std::sync::Mutex<tokio::net::TcpSocket>, u16)> =
        std::sync::OnceLock::new();
    HELD.get_or_init(|| {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind 127.0.0.1:0");
        let port = socket.local_addr().expect("local_addr").port();
        (std::sync::Mutex::new(socket), port)
    })
    .1
}

fn set_port(socket_holder: &mut Value, port: u16) {
    // `socket_holder` is an `address:` value: { socket_address: { address, port_value } }
    if let Some(sa) = socket_holder.get_mut("socket_address") {
        sa["port_value"] = Value::from(port);
    }
}

/// Every `envoy.filters.http.wasm` filter's `config` in the bootstrap.
fn wasm_plugin_configs(root: &mut Value) -> Vec<&mut Value> {
    let mut out = Vec::new();
    let Some(static_resources) = root.get_mut("static_resources") else {
        return out;
    };
    for listener in seq_mut(static_resources, "listeners") {
        for chain in seq_mut(listener, "filter_chains") {
            for filter in seq_mut(chain, "filters") {
                let Some(hcm) = filter.get_mut("typed_config") else {
                    continue;
                };
                for http_filter in seq_mut(hcm, "http_filters") {
                    let is_wasm = http_filter.get("name").and_then(Value::as_str)
                        == Some("envoy.filters.http.wasm");
                    if let (true, Some(config)) = (
                        is_wasm,
                        http_filter
                            .get_mut("typed_config")
                            .and_then(|t| t.get_mut("config")),
                    ) {
                        out.push(config);
                    }
                }
            }
        }
    }
    out
}

/// Every session-guard `envoy.filters.http.dynamic_modules` filter's `typed_config`.
fn dynamic_module_configs(root: &mut Value) -> Vec<&mut Value> {
    let mut out = Vec::new();
    let Some(static_resources) = root.get_mut("static_resources") else {
        return out;
    };
    for listener in seq_mut(static_resources, "listeners") {
        for chain in seq_mut(listener, "filter_chains") {
            for filter in seq_mut(chain, "filters") {
                let Some(hcm) = filter.get_mut("typed_config") else {
                    continue;
                };
                for http_filter in seq_mut(hcm, "http_filters") {
                    let is_module = http_filter.get("name").and_then(Value::as_str)
                        == Some("envoy.filters.http.dynamic_modules");
                    if let (true, Some(config)) = (is_module, http_filter.get_mut("typed_config")) {
                        out.push(config);
                    }
                }
            }
        }
    }
    out
}

type Edit = Box<dyn FnOnce(&mut Value)>;

/// Builds a runnable Envoy configuration from a shipped one (see the module docs).
pub struct EnvoyBuilder {
    source: PathBuf,
    config: Value,
    upstreams: BTreeMap<String, u16>,
    substitute_ports: bool,
    filter_config: Option<String>,
    env: BTreeMap<String, Option<String>>,
    concurrency: u32,
    log_level: String,
    component_log_level: String,
    edits: Vec<Edit>,
    wasm: Option<PathBuf>,
    /// Another Envoy than [`envoy_bin`] (a version test).
    bin: Option<PathBuf>,
}

impl EnvoyBuilder {
    /// Loads a shipped config, e.g. `envoy/ingress.yaml` (relative to the repo root).
    pub fn shipped(path: &str) -> Self {
        let source = manifest_dir().join(path);
        let text = std::fs::read_to_string(&source)
            .unwrap_or_else(|e| panic!("read {}: {e}", source.display()));
        let config: Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("parse {}: {e}", source.display()));
        let mut env = BTreeMap::new();
        env.insert("SESSION_GUARD_KEY".to_owned(), Some(TEST_KEY.to_owned()));
        EnvoyBuilder {
            source,
            config,
            upstreams: BTreeMap::new(),
            substitute_ports: true,
            filter_config: None,
            env,
            concurrency: 1,
            log_level: "warning".to_owned(),
            component_log_level: "wasm:debug".to_owned(),
            edits: Vec::new(),
            wasm: None,
            bin: None,
        }
    }

    /// Points cluster `cluster`'s endpoints at `up`. Clusters given no upstream point at a port
    /// where nothing listens (Envoy answers 503), never at the shipped 808x ports.
    pub fn upstream(self, cluster: &str, up: &Upstream) -> Self {
        self.upstream_port(cluster, up.port())
    }

    pub fn upstream_port(mut self, cluster: &str, port: u16) -> Self {
        self.upstreams.insert(cluster.to_owned(), port);
        self
    }

    /// Replaces the filter's configuration (the JSON in the `StringValue`).
    pub fn filter_config(mut self, json: impl Into<String>) -> Self {
        self.filter_config = Some(json.into());
        self
    }

    /// Sets an environment variable for Envoy (`SESSION_GUARD_KEY` defaults to [`TEST_KEY`]).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.to_owned(), Some(value.to_owned()));
        self
    }

    /// Removes an environment variable from Envoy's environment.
    pub fn env_remove(mut self, name: &str) -> Self {
        self.env.insert(name.to_owned(), None);
        self
    }

    /// Worker threads (`--concurrency`), default 1.
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }

    /// Envoy's main log level (`-l`), default `warning` (the filter logs under `wasm`).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    /// `--component-log-level`, default `wasm:debug`.
    pub fn component_log_level(mut self, spec: &str) -> Self {
        self.component_log_level = spec.to_owned();
        self
    }

    /// Runs another module than [`wasm_path`] (e.g. the fault-injection build).
    pub fn wasm(mut self, path: PathBuf) -> Self {
        self.wasm = Some(path);
        self
    }

    /// Keeps the shipped ports (for `--mode validate`, which binds nothing).
    pub fn keep_ports(mut self) -> Self {
        self.substitute_ports = false;
        self
    }

    /// Any further structural change to the bootstrap, applied after the substitutions.
    /// Runs this Envoy binary instead of [`envoy_bin`].
    pub fn envoy_bin(mut self, bin: PathBuf) -> Self {
        self.bin = Some(bin);
        self
    }

    pub fn edit(mut self, f: impl FnOnce(&mut Value) + 'static) -> Self {
        self.edits.push(Box::new(f));
        self
    }

    /// The bootstrap with every substitution applied.
    pub fn render(self) -> Value {
        let wasm = self.wasm.clone().unwrap_or_else(wasm_path);
        let mut root = self.config;
        let source = self.source.display().to_string();
        if self.substitute_ports {
            let mut unused: Vec<&String> = self.upstreams.keys().collect();
            if let Some(addr) = root.get_mut("admin").and_then(|a| a.get_mut("address")) {
                set_port(addr, 0);
            }
            if let Some(sr) = root.get_mut("static_resources") {
                for listener in seq_mut(sr, "listeners") {
                    if let Some(addr) = listener.get_mut("address") {
                        set_port(addr, 0);
                    }
                }
                for cluster in seq_mut(sr, "clusters") {
                    let name = cluster
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    unused.retain(|u| **u != name);
                    let port = self.upstreams.get(&name).copied().unwrap_or_else(dead_port);
                    let Some(la) = cluster.get_mut("load_assignment") else {
                        continue;
                    };
                    for group in seq_mut(la, "endpoints") {
                        for lb in seq_mut(group, "lb_endpoints") {
                            if let Some(addr) =
                                lb.get_mut("endpoint").and_then(|e| e.get_mut("address"))
                            {
                                set_port(addr, port);
                            }
                        }
                    }
                }
            }
            assert!(
                unused.is_empty(),
                "{source} has no cluster named {unused:?}"
            );
        }
        for module in dynamic_module_configs(&mut root) {
            if let Some(json) = &self.filter_config {
                module["filter_config"]["value"] = Value::from(json.as_str());
            }
        }
        let native_config = !dynamic_module_configs(&mut root).is_empty();
        let plugins = wasm_plugin_configs(&mut root);
        assert!(
            !plugins.is_empty() || native_config,
            "{source}: no envoy.filters.http.wasm or dynamic_modules filter"
        );
        for plugin in plugins {
            plugin["vm_config"]["code"]["local"]["filename"] =
                Value::from(wasm.display().to_string());
            if let Some(json) = &self.filter_config {
                plugin["configuration"]["value"] = Value::from(json.as_str());
            }
        }
        let explicit_wasm = self.wasm.is_some();
        for edit in self.edits {
            edit(&mut root);
        }
        // A test that names its module (e.g. the fault-injection build) runs it as Wasm.
        if native() && !explicit_wasm {
            to_native(&mut root);
        }
        root
    }

    /// Starts Envoy and waits (at most [`STARTUP_TIMEOUT`]) until admin `/ready` says LIVE and
    /// every listener accepts connections. Panics with the log tail otherwise.
    pub async fn start(self) -> Envoy {
        let mut envoy = self.spawn().await;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = envoy.child.try_wait().expect("try_wait envoy") {
                panic!("Envoy exited during startup ({status}); its log tail follows");
            }
            if let Some(listeners) = envoy.serving().await {
                envoy.listeners = listeners;
                break;
            }
            if Instant::now() > deadline {
                panic!("Envoy not ready within {STARTUP_TIMEOUT:?}; its log tail follows");
            }
            tokio::time::sleep(POLL).await;
        }
        envoy.port = envoy.listeners.values().next().copied().unwrap_or(0);
        envoy
    }

    /// Starts Envoy with a configuration that must be refused and returns Envoy's exit code and
    /// log. Envoy 1.40 refuses a static listener whose wasm plugin fails `on_configure` by
    /// exiting with code 1 at startup ("Unable to create Wasm plugin"). Panics (with the log
    /// tail) if Envoy serves instead, or is still running after [`STARTUP_TIMEOUT`].
    pub async fn start_expect_failure(self) -> (Option<i32>, String) {
        let mut envoy = self.spawn().await;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = envoy.child.try_wait().expect("try_wait envoy") {
                return (status.code(), envoy.log());
            }
            if let Some(listeners) = envoy.serving().await {
                panic!(
                    "Envoy serves {listeners:?} although the configuration should be refused; \
                     its log tail follows"
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "Envoy neither exited nor served within {STARTUP_TIMEOUT:?} (up without a \
                     listener?); its log tail follows"
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs `envoy --mode validate` on the rendered config. Returns (valid, output).
    /// Note: validate mode does load the wasm and runs its `on_configure`, so it sees the
    /// filter's own configuration checks (and needs the key's environment variable).
    pub async fn validate(self) -> (bool, String) {
        let dir = unique_dir("validate");
        let (config, env) = self.write_config(&dir);
        let mut cmd = Command::new(envoy_bin());
        apply_env(&mut cmd, &env);
        cmd.arg("--mode")
            .arg("validate")
            .arg("-c")
            .arg(&config)
            .arg("-l")
            .arg("info")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = within(STARTUP_TIMEOUT, cmd.output())
            .await
            .unwrap_or_else(|e| panic!("envoy --mode validate: {e}"))
            .unwrap_or_else(|e| panic!("run {}: {e}", envoy_bin().display()));
        let _ = std::fs::remove_dir_all(&dir);
        let text = format!("{}{}", lossy(&output.stdout), lossy(&output.stderr));
        (output.status.success(), text)
    }

    /// Renders the config into `dir/envoy.yaml`; returns the path and the environment.
    fn write_config(self, dir: &Path) -> (PathBuf, BTreeMap<String, Option<String>>) {
        let path = dir.join("envoy.yaml");
        let mut env = self.env.clone();
        let yaml = serde_yaml::to_string(&self.render()).expect("serialize envoy config");
        if yaml.contains("envoy.filters.http.dynamic_modules") {
            let search = native_path().parent().map(|d| d.display().to_string());
            env.insert("ENVOY_DYNAMIC_MODULES_SEARCH_PATH".to_owned(), search);
        }
        std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        (path, env)
    }

    async fn spawn(self) -> Envoy {
        let bin = self.bin.clone().unwrap_or_else(envoy_bin);
        assert!(
            bin.exists(),
            "no Envoy at {} (set ENVOY_BIN or run `make deps`)",
            bin.display()
        );
        let (filter, hint) = match (&self.wasm, native()) {
            (Some(wasm), _) => (wasm.clone(), "a module the test names"),
            (None, true) => (
                native_path(),
                "set SESSION_GUARD_NATIVE or run `make build-native`",
            ),
            (None, false) => (wasm_path(), "set SESSION_GUARD_WASM or run `make build`"),
        };
        assert!(
            filter.exists(),
            "no filter at {} ({hint})",
            filter.display()
        );
        let dir = unique_dir("envoy");
        let concurrency = self.concurrency;
        let log_level = self.log_level.clone();
        let component = component_log_level(&self.component_log_level);
        let (config, env) = self.write_config(&dir);
        let log_path = dir.join("envoy.log");
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("create stderr.log");
        let mut cmd = Command::new(&bin);
        cmd.arg("-c")
            .arg(&config)
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(dir.join("admin-address"))
            .arg("--log-path")
            .arg(&log_path)
            // The log file is otherwise flushed every 10 s; tests read it while Envoy runs.
            .arg("--file-flush-interval-msec")
            .arg("20")
            .arg("-l")
            .arg(&log_level)
            .arg("--component-log-level")
            .arg(&component)
            .arg("--concurrency")
            .arg(concurrency.to_string())
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().expect("dup stderr.log"))
            .stderr(stderr)
            .kill_on_drop(true);
        apply_env(&mut cmd, &env);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        Envoy {
            child,
            dir,
            port: 0,
            admin_port: 0,
            listeners: BTreeMap::new(),
        }
    }
}

/// The filter logs under `wasm` in the Wasm build and `dynamic_modules` in the native one: the
/// native build gets both (the Istio tests deliver the Wasm build over ECDS in either mode).
fn component_log_level(spec: &str) -> String {
    if !native() {
        return spec.to_owned();
    }
    let native: Vec<String> = spec
        .split(',')
        .filter_map(|c| c.strip_prefix("wasm:"))
        .map(|level| format!("dynamic_modules:{level}"))
        .collect();
    std::iter::once(spec.to_owned())
        .chain(native)
        .collect::<Vec<_>>()
        .join(",")
}

fn apply_env(cmd: &mut Command, env: &BTreeMap<String, Option<String>>) {
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
}
