//! The driver of tests/browser/dbsc.mjs for tests/dbsc_browser.rs: one JSON command per line
//! to the script, one JSON answer per line back.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const STEP_TIMEOUT: Duration = Duration::from_secs(90);

/// False when the test must be skipped (no Chromium outside `make test`).
pub fn chromium_present() -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    if std::env::var_os("SESSION_GUARD_REQUIRE_BROWSER").is_some() {
        panic!("{CHROMIUM} is missing and SESSION_GUARD_REQUIRE_BROWSER is set (apt-get install chromium)");
    }
    eprintln!("SKIPPED DBSC browser test: {CHROMIUM} is missing (apt-get install chromium)");
    false
}

/// tests/browser/dbsc.mjs, one JSON command and one JSON answer per line.
pub struct Chromium {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Chromium {
    pub async fn start(base: &str) -> Chromium {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
        if !dir
            .join("node_modules/playwright-core/package.json")
            .exists()
        {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--prefix"])
                .arg(&dir)
                .status()
                .await
                .expect("npm is needed for the browser test (node 20+)");
            assert!(status.success(), "npm ci --prefix tests/browser failed");
        }
        let mut child = Command::new("node")
            .arg(dir.join("dbsc.mjs"))
            .arg(base)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node is needed for the browser test (node 20+)");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut c = Chromium {
            _child: child,
            stdin,
            lines,
        };
        let ready = c.answer("start").await;
        eprintln!("chromium: {ready}");
        c
    }

    async fn answer(&mut self, what: &str) -> Value {
        let line = tokio::time::timeout(STEP_TIMEOUT, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("dbsc.mjs: no answer to {what} in {STEP_TIMEOUT:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("dbsc.mjs ended before answering {what}"));
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("dbsc.mjs printed no JSON for {what} ({e}): {line}"));
        assert_eq!(v["ok"], true, "dbsc.mjs failed at {what}: {v:#}");
        v
    }

    pub async fn call(&mut self, cmd: Value) -> Value {
        let what = cmd.to_string();
        self.stdin
            .write_all(format!("{what}\n").as_bytes())
            .await
            .unwrap();
        let v = self.answer(&what).await;
        eprintln!("chromium {what} -> {}", short(&v));
        v
    }

    pub async fn goto(&mut self, path: &str) -> Value {
        self.call(json!({"cmd": "goto", "path": path})).await
    }

    pub async fn login(&mut self, user: &str) -> Value {
        self.call(json!({"cmd": "login", "user": user})).await
    }

    pub async fn cookie(&mut self, name: &str) -> Option<Value> {
        let v = self.call(json!({"cmd": "cookies"})).await;
        v["cookies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
    }

    pub async fn clear_cookie(&mut self, name: &str) {
        self.call(json!({"cmd": "clear_cookie", "name": name}))
            .await;
    }

    /// Waits until Chromium reported `count` DBSC events of `kind`; returns them all.
    pub async fn wait_event(&mut self, kind: &str, count: usize) -> Vec<Value> {
        let cmd = json!({"cmd": "wait_event", "type": kind, "count": count, "timeout_ms": 30000});
        let v = self.call(cmd).await;
        v["events"].as_array().unwrap().clone()
    }

    pub async fn events(&mut self, kind: &str) -> Vec<Value> {
        let v = self.call(json!({"cmd": "events"})).await;
        let all = v["events"].as_array().unwrap();
        all.iter().filter(|e| e["type"] == kind).cloned().collect()
    }
}

/// A report line for the test's output (the full page JSON can be long).
fn short(v: &Value) -> String {
    let s = v.to_string();
    s.chars().take(600).collect()
}
