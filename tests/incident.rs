//! Incident response in the real Envoy (the shipped ingress): sessions in the access log (their
//! hash and the filter's decision, as filter state), revocation by configuration
//! (`revoke.not_before`, `revoke.subjects`, `revoke.sessions`), a session changing hands
//! (`detect.client_change`), and `scripts/revoke`, which prints the patch an operator applies.
//!
//! Sessions are stateless: a cookie minted by one Envoy is valid at another with the same key
//! (and scope: every request here is for `localhost`). So the revocation tests mint sessions on
//! an Envoy without revocation, then present them to one started with it.
// Test code throughout (always true under `cargo test`): so clippy.toml's allow-*-in-tests also
// cover the helpers here, which fail like tests do (rust-clippy#13981).
#![cfg(test)]

mod common;

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::access_log::*;
use common::*;

const KEY: &str = r#"{"id":"k1","secret_env":"SESSION_GUARD_KEY"}"#;

/// The shipped ingress's filter configuration plus `extra` (JSON members, or "").
fn config(extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { "," };
    format!(r#"{{"keys":[{KEY}],"signal":{{"trusted_clusters":["auth"]}}{sep}{extra}}}"#)
}

/// `auth` logs users in: `/auth/login?user=U` signals login as U.
fn auth(r: &Recorded) -> Reply {
    let path = r.path_str();
    match path.strip_prefix("/auth/login?user=") {
        Some(user) => Reply::ok()
            .header("x-session-guard", "login")
            .header("x-session-guard-subject", user),
        None => Reply::ok(),
    }
}

async fn mesh(config: String) -> Mesh {
    Mesh::start(auth, |_| Reply::ok(), move |b| b.filter_config(config)).await
}

/// One request as the test sees it: the response, and what the upstream got.
struct Seen {
    resp: Resp,
    /// `x-session-id` as the upstream got it.
    id: String,
    subject: Option<String>,
    request_id: String,
}

impl Seen {
    fn cookie(&self) -> Option<String> {
        set_cookie_value(&self.resp, SESSION_COOKIE)
    }
    fn hash(&self) -> String {
        session_hash(&self.id)
    }
}

/// GET `path` (`/auth/...` reaches `auth`, the rest `app`) with the mesh cookie and a
/// User-Agent if given.
async fn get(m: &Mesh, path: &str, cookie: Option<&str>, ua: Option<&str>) -> Seen {
    let up = if path.starts_with("/auth/") {
        &m.auth
    } else {
        &m.app
    };
    let before = up.count();
    let mut req = Req::get(path);
    if let Some(c) = cookie {
        req = req.header("cookie", format!("{SESSION_COOKIE}={c}"));
    }
    if let Some(ua) = ua {
        req = req.header("user-agent", ua);
    }
    let resp = send(m.envoy.port(), req).await;
    assert_eq!(resp.status, 200, "GET {path}: {resp:?}");
    assert_eq!(
        up.count(),
        before + 1,
        "GET {path} did not reach its upstream"
    );
    let got = up.last().unwrap();
    Seen {
        resp,
        id: got.header("x-session-id").expect("x-session-id forwarded"),
        subject: got.header("x-session-subject"),
        request_id: got.header("x-request-id").expect("x-request-id forwarded"),
    }
}

/// Asserts the access log line of `seen`'s request: its session hash and decision.
async fn assert_logged(m: &Mesh, seen: &Seen, session: &str, decision: &str) {
    let line = access_line(&m.envoy, &seen.request_id).await;
    assert_eq!(
        (line.session.as_str(), line.decision.as_str()),
        (session, decision),
        "{}",
        line.raw
    );
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sleeps into the next second, so that a time taken now lies after every issue time so far.
async fn next_second() {
    let start = now_s();
    while now_s() == start {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Polls Envoy's log until one line contains every needle; panics after 5 s.
async fn wait_log_with(envoy: &Envoy, needles: &[&str]) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let log = envoy.log();
        if let Some(line) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return line.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line contains all of {needles:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Sessions in the access log

#[tokio::test(flavor = "multi_thread")]
async fn access_log_names_each_request_by_session_hash_and_decision() {
    let m = mesh(config("")).await;
    let anon = get(&m, "/", None, None).await;
    let pre = anon.cookie().expect("a session minted");
    assert_logged(&m, &anon, &anon.hash(), "minted").await;

    let again = get(&m, "/account", Some(&pre), None).await;
    assert_eq!(again.id, anon.id);
    assert_logged(&m, &again, &anon.hash(), "valid").await;

    // The login ends with the rotated session: the access log names the new one.
    let login = get(&m, "/auth/login?user=alice", Some(&pre), None).await;
    let post = login.cookie().expect("a new cookie on login");
    let who = get(&m, "/account", Some(&post), None).await;
    assert_eq!(who.subject.as_deref(), Some("alice"));
    assert_ne!(who.hash(), anon.hash());
    assert_logged(&m, &login, &who.hash(), "rotated_login").await;
    assert_logged(&m, &who, &who.hash(), "valid").await;

    // The pre-login cookie replayed after the login: still valid, never authenticated.
    let replay = get(&m, "/account", Some(&pre), None).await;
    assert_eq!(
        (replay.id.as_str(), replay.subject.as_deref()),
        (anon.id.as_str(), None)
    );
    assert_logged(&m, &replay, &anon.hash(), "valid").await;

    // A forged cookie: refused, a fresh session named by its own hash.
    let forged = format!("{}AAAA", &pre[..pre.len() - 4]);
    let refused = get(&m, "/", Some(&forged), None).await;
    assert_ne!(refused.id, anon.id);
    assert!(
        refused.cookie().is_some(),
        "a fresh session for a forged cookie"
    );
    assert_logged(&m, &refused, &refused.hash(), "forged").await;

    // The access log carries hashes only: never an ID or a cookie value.
    let log: String = access_lines(&m.envoy)
        .iter()
        .map(|l| l.raw.clone() + "\n")
        .collect();
    for secret in [&anon.id, &who.id, &refused.id, &pre, &post, &forged] {
        assert!(
            !log.contains(secret.as_str()),
            "the access log shows {secret}"
        );
    }
    // The filter's own log lines name sessions by the same hash.
    m.envoy.wait_log(&format!("session={}", anon.hash())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_without_a_session_says_none_and_a_rejected_url_says_why() {
    let m = mesh(config(
        r#""cookie":{"anonymous":false},"url":{"action":"reject"}"#,
    ))
    .await;
    let resp = send(m.envoy.port(), Req::get("/")).await;
    assert_eq!(resp.status, 200);
    let request_id = m.app.last().unwrap().header("x-request-id").unwrap();
    let line = access_line(&m.envoy, &request_id).await;
    assert_eq!(
        (line.session.as_str(), line.decision.as_str()),
        ("-", "none")
    );

    let resp = send(m.envoy.port(), Req::get("/?jsessionid=PLANTED1234")).await;
    assert_eq!(resp.status, 400);
    let lines = wait_access_lines(&m.envoy, 2).await;
    let last = lines.last().unwrap();
    assert_eq!((last.status, last.decision.as_str()), (400, "url_rejected"));
    assert!(!last.raw.contains("PLANTED1234"), "{}", last.raw);
}

// ---------------------------------------------------------------------------------------------
// Revocation by configuration

/// `session`'s cookie at `m`: refused as revoked (a fresh anonymous session, counted, logged
/// with the hash, never forwarded).
async fn assert_revoked(m: &Mesh, session: &Seen, cookie: &str, count: u64) {
    let seen = get(m, "/", Some(cookie), None).await;
    assert_ne!(seen.id, session.id, "a revoked session reached the app");
    assert!(seen.subject.is_none(), "{:?}", seen.subject);
    assert!(
        seen.cookie().is_some(),
        "a fresh session for a revoked cookie"
    );
    m.envoy
        .wait_counter("session_guard.session.invalid.revoked", count)
        .await;
    let needle = format!(
        "session cookie invalid: revoked session={} ",
        session.hash()
    );
    let line = wait_log_with(&m.envoy, &[&needle, "request_id="]).await;
    assert!(!line.contains(&session.id), "{line}");
    assert_logged(m, &seen, &seen.hash(), "revoked").await;
}

async fn assert_valid(m: &Mesh, session: &Seen, cookie: &str) {
    let seen = get(m, "/", Some(cookie), None).await;
    assert_eq!(seen.id, session.id, "a session not revoked was refused");
    assert_eq!(seen.subject, session.subject);
}

/// The mesh cookie the response to `s` set.
fn cookie_of(s: &Seen) -> String {
    s.cookie().expect("a mesh cookie set")
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_sessions_subjects_and_not_before_end_exactly_the_named_sessions() {
    let before = mesh(config("")).await;
    let anon_resp = get(&before, "/", None, None).await;
    let anon_cookie = cookie_of(&anon_resp);
    let alice_cookie = cookie_of(&get(&before, "/auth/login?user=alice", None, None).await);
    let bob_cookie = cookie_of(&get(&before, "/auth/login?user=bob", None, None).await);
    let anon = get(&before, "/", Some(&anon_cookie), None).await;
    let alice = get(&before, "/", Some(&alice_cookie), None).await;
    let bob = get(&before, "/", Some(&bob_cookie), None).await;
    assert_eq!(alice.subject.as_deref(), Some("alice"));
    next_second().await;
    let t = now_s();

    // revoke.sessions: the anonymous session by its hash; the others stay valid.
    let m = mesh(config(&format!(
        r#""revoke":{{"sessions":["{}"]}}"#,
        anon.hash()
    )))
    .await;
    assert_revoked(&m, &anon, &anon_cookie, 1).await;
    assert_valid(&m, &alice, &alice_cookie).await;
    assert_valid(&m, &bob, &bob_cookie).await;

    // revoke.subjects: alice's sessions issued before t; bob and the anonymous one stay valid,
    // and alice's next login (issued at or after t) is valid.
    let m = mesh(config(&format!(
        r#""revoke":{{"subjects":{{"alice":{t}}}}}"#
    )))
    .await;
    assert_revoked(&m, &alice, &alice_cookie, 1).await;
    assert_valid(&m, &bob, &bob_cookie).await;
    assert_valid(&m, &anon, &anon_cookie).await;
    let relogin = cookie_of(&get(&m, "/auth/login?user=alice", None, None).await);
    let again = get(&m, "/", Some(&relogin), None).await;
    assert_eq!(again.subject.as_deref(), Some("alice"));

    // revoke.not_before: every session issued before t; new ones are valid.
    let m = mesh(config(&format!(r#""revoke":{{"not_before":{t}}}"#))).await;
    assert_revoked(&m, &bob, &bob_cookie, 1).await;
    assert_revoked(&m, &anon, &anon_cookie, 2).await;
    let fresh = get(&m, "/", None, None).await;
    assert_valid(&m, &fresh, &cookie_of(&fresh)).await;
}

// ---------------------------------------------------------------------------------------------
// A session that changes hands

#[tokio::test(flavor = "multi_thread")]
async fn client_change_is_counted_by_default_and_the_session_stays_valid() {
    let m = mesh(config("")).await;
    let minted = get(&m, "/", None, Some("Browser/1")).await;
    let cookie = cookie_of(&minted);
    let same = get(&m, "/", Some(&cookie), Some("Browser/1")).await;
    assert_eq!(same.id, minted.id);
    assert_eq!(
        m.envoy
            .counter("session_guard.session.client_changed")
            .await,
        0
    );

    let other = get(&m, "/", Some(&cookie), Some("Stolen/9")).await;
    assert_eq!(other.id, minted.id, "count: the session stays valid");
    m.envoy
        .wait_counter("session_guard.session.client_changed", 1)
        .await;
    assert_logged(&m, &other, &minted.hash(), "client_changed").await;
    let line = wait_log_with(&m.envoy, &["client", &format!("session={}", minted.hash())]).await;
    assert!(
        !line.contains("Stolen/9") && !line.contains("Browser/1"),
        "{line}"
    );

    // A login records the client it happened from.
    let login = get(
        &m,
        "/auth/login?user=alice",
        Some(&cookie),
        Some("Browser/2"),
    )
    .await;
    let post = cookie_of(&login);
    // The login request itself presented Browser/1's session from Browser/2: counted once.
    get(&m, "/", Some(&post), Some("Browser/2")).await;
    assert_eq!(
        m.envoy
            .counter("session_guard.session.client_changed")
            .await,
        2
    );
    get(&m, "/", Some(&post), Some("Browser/1")).await;
    m.envoy
        .wait_counter("session_guard.session.client_changed", 3)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_change_end_gives_a_replayed_cookie_nothing() {
    let m = mesh(config(r#""detect":{"client_change":"end"}"#)).await;
    let login = get(&m, "/auth/login?user=alice", None, Some("Browser/1")).await;
    let cookie = cookie_of(&login);
    let victim = get(&m, "/", Some(&cookie), Some("Browser/1")).await;
    assert_eq!(victim.subject.as_deref(), Some("alice"));

    let thief = get(&m, "/", Some(&cookie), Some("Stolen/9")).await;
    assert_ne!(
        thief.id, victim.id,
        "end: the replayed session reached the app"
    );
    assert!(thief.subject.is_none(), "{:?}", thief.subject);
    assert!(
        thief.cookie().is_some(),
        "the replaying client gets a fresh session"
    );
    m.envoy
        .wait_counter("session_guard.session.client_changed", 1)
        .await;
    assert_logged(&m, &thief, &thief.hash(), "client_changed").await;

    // Stateless: the victim's own browser still holds a valid session.
    let again = get(&m, "/", Some(&cookie), Some("Browser/1")).await;
    assert_eq!(again.id, victim.id);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_change_off_counts_nothing() {
    let m = mesh(config(r#""detect":{"client_change":"off"}"#)).await;
    let minted = get(&m, "/", None, Some("Browser/1")).await;
    let other = get(&m, "/", Some(&cookie_of(&minted)), Some("Stolen/9")).await;
    assert_eq!(other.id, minted.id);
    assert_eq!(
        m.envoy
            .counter("session_guard.session.client_changed")
            .await,
        0
    );
}

// ---------------------------------------------------------------------------------------------
// scripts/revoke (no kubectl: its output is parsed)

/// Runs scripts/revoke; returns (exit code, stdout, stderr).
fn revoke(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let mut cmd = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/revoke"));
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("run scripts/revoke");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// The `kubectl ... patch` line of the output: (namespace, name, the merge patch as JSON).
fn patch_of(stdout: &str) -> (String, String, serde_json::Value) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("kubectl ") && l.contains(" patch "))
        .unwrap_or_else(|| panic!("no kubectl patch line:\n{stdout}"));
    let words: Vec<&str> = line.splitn(8, ' ').collect();
    assert_eq!(
        words[..7],
        [
            "kubectl",
            "-n",
            words[2],
            "patch",
            "wasmplugin",
            words[5],
            "--type"
        ],
        "{line}"
    );
    let rest = words[7].strip_prefix("merge -p ").expect("--type merge -p");
    // shlex.quote: '...' with every ' written as '"'"'
    let json = rest
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .unwrap_or(rest)
        .replace(r#"'"'"'"#, "'");
    let patch = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    (words[2].to_owned(), words[5].to_owned(), patch)
}

#[test]
fn revoke_script_prints_merge_patches_for_subjects_and_everyone() {
    let (code, out, err) = revoke(&["--subject", "o'brien", "--at", "1700000000"], None);
    assert_eq!(code, 0, "{err}");
    let (ns, name, patch) = patch_of(&out);
    assert_eq!(
        (ns.as_str(), name.as_str()),
        ("istio-system", "session-guard")
    );
    assert_eq!(
        patch,
        serde_json::json!({"spec":{"pluginConfig":{"revoke":{"subjects":{"o'brien":1700000000}}}}})
    );
    assert!(
        out.contains("\"o'brien\": 1700000000"),
        "the YAML fragment:\n{out}"
    );

    let (code, out, _) = revoke(&["--all", "--plugin", "sidecar"], None);
    assert_eq!(code, 0);
    let (ns, _, patch) = patch_of(&out);
    assert_eq!(ns, "default", "the sidecar WasmPlugin's namespace");
    let at = patch["spec"]["pluginConfig"]["revoke"]["not_before"]
        .as_u64()
        .expect("not_before");
    assert!(at.abs_diff(now_s()) <= 5, "--all defaults to now: {at}");
}

#[test]
fn revoke_script_appends_sessions_to_the_current_list_with_a_precondition() {
    let current = r#"{"kind":"WasmPlugin","metadata":{"name":"session-guard",
        "namespace":"istio-system","resourceVersion":"4711"},
        "spec":{"pluginConfig":{"keys":[],"revoke":{"sessions":["00000000000000aa"],
        "subjects":{"bob":1800000000}}}}}"#;
    let (code, out, err) = revoke(
        &[
            "--session",
            "3F2A9C0D11E4B756",
            "--session",
            "00000000000000aa",
            "--current-from",
            "-",
        ],
        Some(current),
    );
    assert_eq!(code, 0, "{err}");
    let (_, _, patch) = patch_of(&out);
    assert_eq!(
        patch,
        serde_json::json!({
            "metadata": {"resourceVersion": "4711"},
            "spec": {"pluginConfig": {"revoke": {"sessions": ["00000000000000aa", "3f2a9c0d11e4b756"]}}}
        }),
        "the whole list (a merge patch replaces arrays), deduplicated, lowercase"
    );

    // A later time already there is kept: a revocation never shrinks.
    let (_, out, _) = revoke(
        &[
            "--subject",
            "bob",
            "--at",
            "1700000000",
            "--current-from",
            "-",
        ],
        Some(current),
    );
    assert_eq!(
        patch_of(&out).2["spec"]["pluginConfig"]["revoke"]["subjects"]["bob"],
        1800000000
    );

    // Without the current WasmPlugin, --session prints the pipeline that reads it.
    let (code, out, _) = revoke(&["--session", "3f2a9c0d11e4b756"], None);
    assert_eq!(code, 0);
    assert!(
        out.contains("kubectl -n istio-system get wasmplugin session-guard -o json | scripts/revoke --session 3f2a9c0d11e4b756 --current-from -"),
        "{out}"
    );
    assert!(!out.contains("patch wasmplugin"), "{out}");
}

#[test]
fn revoke_script_refuses_bad_input() {
    for args in [
        &["--session", "3f2a9c0d11e4b75"][..],
        &["--session", "3f2a9c0d11e4b75g"],
        &["--subject", ""],
        &["--subject", "caf\u{e9}"],
        &["--all", "--at", "99999999999"],
        &["--session", "3f2a9c0d11e4b756", "--at", "1"],
        &["--subject", "a", "--all"],
    ] {
        let (code, out, _) = revoke(args, None);
        assert_eq!(code, 2, "{args:?} accepted:\n{out}");
        assert!(!out.contains("kubectl"), "{args:?}: {out}");
    }
    let (code, _, err) = revoke(
        &["--session", "3f2a9c0d11e4b756", "--current-from", "-"],
        Some("{}"),
    );
    assert_eq!(code, 2);
    assert!(err.contains("not a WasmPlugin"), "{err}");
}

/// The formula of docs/operations.md and istio/RUNBOOK.md (its Python one-liner gives the same).
#[test]
fn session_hash_is_the_documented_formula() {
    assert_eq!(session_hash("AAECAwQFBgcICQoLDA0ODw"), "51d1df287047a731");
}

// ---------------------------------------------------------------------------------------------
// One access log format everywhere

/// The access log format of a shipped Envoy config (its one access log).
fn envoy_format(file: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let root: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let hcm =
        &root["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let logs = hcm["access_log"].as_sequence().expect("an access_log");
    assert_eq!(logs.len(), 1, "{file}");
    let cfg = &logs[0]["typed_config"];
    assert_eq!(cfg["path"].as_str(), Some("/dev/stdout"), "{file}");
    cfg["log_format"]["text_format_source"]["inline_string"]
        .as_str()
        .expect("a text format")
        .to_owned()
}

#[test]
fn istio_telemetry_and_both_envoy_configs_log_the_same_line() {
    // The mesh config's provider (install-time) and the Telemetry resource (applied).
    let docs: Vec<serde_yaml::Value> =
        ["istio/patches/mesh-access-log.yaml", "istio/telemetry.yaml"]
            .iter()
            .map(|f| {
                let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
                serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
            })
            .collect();
    let provider = &docs[0]["spec"]["meshConfig"]["extensionProviders"][0];
    let name = provider["name"].as_str().unwrap();
    let istio = provider["envoyFileAccessLog"]["logFormat"]["text"]
        .as_str()
        .unwrap();
    assert_eq!(
        docs[1]["spec"]["accessLogging"][0]["providers"][0]["name"].as_str(),
        Some(name),
        "the Telemetry resource turns on the provider the mesh config defines"
    );
    assert_eq!(docs[1]["kind"].as_str(), Some("Telemetry"));
    for file in ["envoy/ingress.yaml", "envoy/sidecar.yaml"] {
        assert_eq!(envoy_format(file), istio, "{file} vs istio/telemetry.yaml");
    }
    for operand in [
        "%FILTER_STATE(wasm.session_guard.session:PLAIN)%",
        "%FILTER_STATE(wasm.session_guard.decision:PLAIN)%",
        "%REQ(X-REQUEST-ID)%",
    ] {
        assert!(istio.contains(operand), "{operand}");
    }
    assert!(
        !istio.contains("PATH"),
        "the path may carry a URL session ID"
    );
    let sample = "[2025-01-01T00:00:00.000Z] \"GET example.com\" 200 - 3ms app \
                  request_id=r-1 session=0123456789abcdef decision=valid";
    let line = parse_access_line(sample).expect("the test parser reads the format");
    assert_eq!(
        (line.status, line.request_id.as_str(), line.session.as_str()),
        (200, "r-1", "0123456789abcdef")
    );
}
