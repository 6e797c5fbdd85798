//! A real browser through the real stack: headless Chromium (Debian's `chromium`, driven by
//! `playwright-core` in tests/browser/login.mjs) logs in through the demo's form, against
//! Envoy running the shipped envoy/ingress.yaml with the built filter, in front of the demo's
//! Python upstreams (demo/app.py, demo/auth.py, and app.py again as the API). The script
//! reports what the browser saw as JSON; this test asserts on it, and replays the pre-login
//! cookie with a plain HTTP client.
//!
//! Needs: `make build` (the wasm), `make deps` (Envoy, the venv), Debian `chromium`, node 20+
//! and npm (this test runs `npm ci --prefix tests/browser` when tests/browser/node_modules
//! lacks playwright-core). Without /usr/bin/chromium the test is skipped, unless
//! SESSION_GUARD_REQUIRE_BROWSER is set (CI sets it): then it fails.
//! SESSION_GUARD_BROWSER_SHOTS=<dir> keeps a screenshot of each step there.
// Test code throughout (always true under `cargo test`): so clippy.toml's allow-*-in-tests also
// cover the helpers here, which fail like tests do (rust-clippy#13981).
#![cfg(test)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{cookie_attr, send, set_cookie, set_cookie_value, EnvoyBuilder, Req};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

const COOKIE: &str = "__Host-session";
const CHROMIUM: &str = "/usr/bin/chromium";
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    let venv = root().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// Starts a demo upstream on a port the OS picks; it prints the bound port on its first line
/// (`[app] listening on 127.0.0.1:PORT`). Killed when the returned child is dropped.
async fn spawn_demo(script: &str, name: &str) -> (Child, u16) {
    let mut child = Command::new(python())
        .arg("-u")
        .arg(root().join("demo").join(script))
        .args(["0", name])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit()) // its request log shows in the test's output on failure
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", python().display()));
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout);
    tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
        .await
        .unwrap_or_else(|_| panic!("demo/{script} printed no port in 10 s"))
        .unwrap();
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("demo/{script}: unexpected first line {line:?}"));
    (child, port)
}

async fn ensure_playwright(dir: &Path) {
    if dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--prefix"])
        .arg(dir)
        .status()
        .await
        .expect("npm is needed for the browser test (node 20+)");
    assert!(status.success(), "npm ci --prefix tests/browser failed");
}

/// Runs tests/browser/login.mjs against `url`; returns its JSON report.
async fn run_browser(url: &str) -> Value {
    let dir = root().join("tests/browser");
    ensure_playwright(&dir).await;
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("login.mjs")).arg(url);
    if let Some(shots) = std::env::var_os("SESSION_GUARD_BROWSER_SHOTS") {
        cmd.arg(shots);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node is needed for the browser test (node 20+)");
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    tokio::time::timeout(BROWSER_TIMEOUT, async {
        stdout.read_to_string(&mut out).await.unwrap();
        child.wait().await.unwrap()
    })
    .await
    .unwrap_or_else(|_| panic!("the browser script ran over {BROWSER_TIMEOUT:?}"));
    let last = out.lines().last().unwrap_or("");
    let report: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the browser script printed no JSON ({e}):\n{out}"));
    assert!(
        report.get("error").is_none(),
        "the browser script failed:\n{report:#}"
    );
    report
}

/// A string in the report, or a failure naming where it was expected.
fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v:#}"))
}

/// GET /whoami through Envoy with only the given mesh cookie, from a client with no state.
async fn whoami_with(port: u16, cookie_value: &str) -> Value {
    let resp = send(
        port,
        Req::get("/whoami").header("cookie", format!("{COOKIE}={cookie_value}")),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    serde_json::from_slice(&resp.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_login_rotates_the_session_and_the_old_cookie_stays_anonymous() {
    if !Path::new(CHROMIUM).exists() {
        if std::env::var_os("SESSION_GUARD_REQUIRE_BROWSER").is_some() {
            panic!("{CHROMIUM} is missing and SESSION_GUARD_REQUIRE_BROWSER is set (apt-get install chromium)");
        }
        eprintln!(
            "SKIPPED browser test: {CHROMIUM} is missing (apt-get install chromium; \
             set SESSION_GUARD_REQUIRE_BROWSER to make this a failure, as CI does)"
        );
        return;
    }
    let wasm = common::wasm_path();
    assert!(
        wasm.exists(),
        "no filter at {} (make build)",
        wasm.display()
    );

    let (_app, app) = spawn_demo("app.py", "app").await;
    let (_auth, auth) = spawn_demo("auth.py", "auth").await;
    let (_api, api) = spawn_demo("app.py", "api").await;
    let envoy = EnvoyBuilder::shipped("envoy/ingress.yaml")
        .upstream_port("app", app)
        .upstream_port("auth", auth)
        .upstream_port("api", api)
        .concurrency(2)
        .component_log_level("wasm:info")
        .start()
        .await;
    let port = envoy.port();
    let base = envoy.url("");

    let r = run_browser(&base).await;
    eprintln!("browser report: {r:#}");

    // First visit: an anonymous mesh session, in a __Host- cookie page scripts cannot read.
    let before = &r["before"];
    assert_eq!(before["status"], 200);
    let c = &before["cookie"];
    assert_eq!(c["path"], "/", "{before:#}");
    assert_eq!(c["secure"], true, "{before:#}");
    assert_eq!(c["httpOnly"], true, "{before:#}");
    assert_eq!(c["sameSite"], "Lax", "{before:#}");
    assert_eq!(c["domain"], "127.0.0.1", "a host-only cookie: {before:#}");
    let raw: Vec<&str> = before["set_cookie"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mesh_line = raw
        .iter()
        .find(|l| l.starts_with(&format!("{COOKIE}=")))
        .unwrap_or_else(|| panic!("no {COOKIE} Set-Cookie: {raw:?}"));
    assert_eq!(cookie_attr(mesh_line, "Domain"), None, "{mesh_line}");
    assert!(cookie_attr(mesh_line, "Max-Age").is_some(), "{mesh_line}");
    let doc_cookie = s(before, "/document_cookie");
    assert!(
        !doc_cookie.contains(COOKIE),
        "page scripts can read the mesh cookie: {doc_cookie}"
    );
    assert!(
        doc_cookie.contains("theme=dark"),
        "the app's own cookie stays readable: {doc_cookie}"
    );
    let theme = raw.iter().find(|l| l.starts_with("theme=")).unwrap();
    assert!(
        cookie_attr(theme, "Secure").is_some() && cookie_attr(theme, "SameSite").is_some(),
        "the app's cookie is hardened by the mesh: {theme}"
    );
    assert_eq!(s(before, "/subject"), "anonymous");
    let sid0 = s(before, "/session_id");
    assert!(sid0.len() >= 22, "x-session-id reached the app: {sid0}");
    assert!(
        !s(before, "/upstream_cookie").contains(COOKIE),
        "{before:#}"
    );
    let old_cookie = s(before, "/cookie/value").to_owned();

    // A planted ?jsessionid= never reaches the app; the rest of the URL does.
    assert_eq!(s(&r, "/planted_link/path"), "/?page=2");
    assert_eq!(s(&r, "/planted_link/session_id"), sid0);

    // Login through the form: cookie and session ID rotate, and the app sees the subject.
    let after = &r["after_login"];
    assert_eq!(s(after, "/url"), format!("{base}/"));
    assert_eq!(s(after, "/subject"), "alice");
    assert_ne!(
        s(after, "/cookie/value"),
        old_cookie,
        "cookie not rotated at login"
    );
    assert_eq!(after["cookie"]["httpOnly"], true);
    let sid1 = s(after, "/session_id");
    assert_ne!(sid1, sid0, "session ID not rotated at login");

    // The pre-login cookie, replayed by clients with no browser state, is not authenticated:
    // by Playwright's request context, and by this test's own HTTP client.
    assert_eq!(r["replay_old"]["status"], 200);
    assert_eq!(r["replay_old"]["body"]["subject"], Value::Null, "{r:#}");
    assert_ne!(s(&r, "/replay_old/body/session_id"), sid1);
    let replay = whoami_with(port, &old_cookie).await;
    assert_eq!(
        replay["subject"],
        Value::Null,
        "old cookie authenticated: {replay}"
    );
    assert_ne!(replay["session_id"].as_str(), Some(sid1));

    // Logout: the mesh expires its cookie; the next page is a new anonymous session.
    let out = &r["after_logout"];
    assert_eq!(s(out, "/subject"), "anonymous");
    assert_ne!(s(out, "/session_id"), sid1);
    assert_ne!(out["cookie"]["value"], after["cookie"]["value"]);

    // The same fixation attempt with the plain client, which also shows such a client can be
    // authenticated at all: the attacker's cookie is planted, the victim logs in with it, and
    // only the cookie minted at login is the victim's.
    let planted = set_cookie_value(&send(port, Req::get("/")).await, COOKIE).expect("minted");
    let login = send(
        port,
        Req::post("/auth/login", "username=victim&password=demo")
            .header("cookie", format!("{COOKIE}={planted}"))
            .header("content-type", "application/x-www-form-urlencoded"),
    )
    .await;
    assert_eq!(login.status, 303, "{}", login.body_str());
    assert!(
        login.header("x-session-guard").is_none(),
        "signal header reached the client"
    );
    assert!(set_cookie(&login, COOKIE).is_some());
    let fresh = set_cookie_value(&login, COOKIE).unwrap();
    assert_ne!(fresh, planted);
    let victim = whoami_with(port, &fresh).await;
    assert_eq!(victim["subject"], "victim");
    let attacker = whoami_with(port, &planted).await;
    assert_eq!(
        attacker["subject"],
        Value::Null,
        "session fixation: {attacker}"
    );
    assert_ne!(attacker["session_id"], victim["session_id"]);
    drop(envoy);
}
