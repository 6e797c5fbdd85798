//! [`Envoy`]: a running Envoy process, its admin interface, counters and log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::process::Child;

use super::{lossy, send, try_send, Req, Resp, POLL};

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A running Envoy. Dropping it kills the process (SIGKILL) and removes its temp dir.
pub struct Envoy {
    // Set by EnvoyBuilder (envoy.rs), which spawns the process and waits for its listeners.
    pub(super) child: Child,
    pub(super) dir: PathBuf,
    pub(super) port: u16,
    pub(super) admin_port: u16,
    pub(super) listeners: BTreeMap<String, u16>,
}

impl Envoy {
    /// The port of the (first) listener.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the listener named `name` in the config.
    pub fn listener_port(&self, name: &str) -> u16 {
        *self
            .listeners
            .get(name)
            .unwrap_or_else(|| panic!("no listener {name:?}; have {:?}", self.listeners))
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The directory holding `envoy.yaml`, `envoy.log` and `stderr.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Everything Envoy logged so far (the log file, then stdout/stderr).
    pub fn log(&self) -> String {
        let read = |name: &str| {
            std::fs::read(self.dir.join(name))
                .map(|b| lossy(&b))
                .unwrap_or_default()
        };
        format!("{}{}", read("envoy.log"), read("stderr.log"))
    }

    /// GET `path` on the admin interface.
    pub async fn admin(&self, path: &str) -> Resp {
        send(self.admin_port, Req::get(path)).await
    }

    /// Every counter, from admin `/stats?format=json&type=Counters`.
    pub async fn counters(&self) -> BTreeMap<String, u64> {
        let resp = self.admin("/stats?format=json&type=Counters").await;
        let json: serde_json::Value = serde_json::from_slice(&resp.body)
            .unwrap_or_else(|e| panic!("admin /stats JSON: {e}: {}", resp.body_str()));
        json["stats"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| Some((s["name"].as_str()?.to_owned(), s["value"].as_u64()?)))
            .collect()
    }

    /// The filter's own counters (`wasmcustom.` or, native build, `dynamicmodulescustom.`),
    /// by their names without that prefix.
    pub async fn filter_counters(&self) -> BTreeMap<String, u64> {
        self.counters()
            .await
            .into_iter()
            .filter_map(|(k, v)| {
                let own = k
                    .strip_prefix("wasmcustom.")
                    .or_else(|| k.strip_prefix("dynamicmodulescustom."));
                own.map(|k| (k.to_owned(), v))
            })
            .collect()
    }

    /// A counter by name: exact, or the filter's own under `wasmcustom.` (so
    /// `counter("session_guard.session.minted")` reads `wasmcustom.session_guard.session.minted`),
    /// or `dynamicmodulescustom.` for the native build. 0 when absent.
    pub async fn counter(&self, name: &str) -> u64 {
        let counters = self.counters().await;
        counters
            .get(name)
            .or_else(|| counters.get(&format!("wasmcustom.{name}")))
            .or_else(|| counters.get(&format!("dynamicmodulescustom.{name}")))
            .copied()
            .unwrap_or(0)
    }

    /// Polls [`Envoy::counter`] until it reaches `at_least` (for counters the filter updates
    /// after the response went out); panics after 5 s. Returns the value reached.
    pub async fn wait_counter(&self, name: &str, at_least: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.counter(name).await;
            if v >= at_least {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "counter {name} is {v}, expected at least {at_least}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Admin `/stats/prometheus`.
    pub async fn prometheus(&self) -> String {
        self.admin("/stats/prometheus").await.body_str()
    }

    /// Polls the log until a line contains `needle`; panics after 5 s. Returns that line.
    pub async fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no log line contains {needle:?}; Envoy's log tail follows"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Listener name → port once admin says LIVE and every listener accepts; `None` before.
    pub(super) async fn serving(&mut self) -> Option<BTreeMap<String, u16>> {
        if self.admin_port == 0 {
            let text = std::fs::read_to_string(self.dir.join("admin-address")).ok()?;
            self.admin_port = text.trim().rsplit(':').next()?.parse().ok()?;
        }
        let ready = try_send(self.admin_port, Req::get("/ready")).await.ok()?;
        if ready.status != 200 || ready.body_str().trim() != "LIVE" {
            return None;
        }
        let resp = try_send(self.admin_port, Req::get("/listeners?format=json"))
            .await
            .ok()?;
        let json: serde_json::Value = serde_json::from_slice(&resp.body).ok()?;
        let mut listeners = BTreeMap::new();
        for l in json["listener_statuses"].as_array()? {
            let name = l["name"].as_str()?.to_owned();
            let port = l["local_address"]["socket_address"]["port_value"].as_u64()?;
            listeners.insert(name, u16::try_from(port).ok().filter(|p| *p != 0)?);
        }
        if listeners.is_empty() {
            return None;
        }
        for port in listeners.values() {
            TcpStream::connect(("127.0.0.1", *port)).await.ok()?;
        }
        Some(listeners)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if self.child.id().is_some() {
                // Still running: let Envoy's 20 ms file flush run once before SIGKILL drops
                // its buffer, so the tail below is complete. Failing tests only.
                std::thread::sleep(Duration::from_millis(100));
            }
            // Each test starts its own Envoy: every line below is this test's. libtest names
            // the test's thread after the test, so the header says which test it belongs to.
            let test = std::thread::current().name().unwrap_or("?").to_owned();
            eprintln!(
                "--- Envoy log tail of test {test} ({}) ---\n{}\n--- end of Envoy log of {test} ---",
                self.dir.display(),
                tail(&self.log(), 80)
            );
        }
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
