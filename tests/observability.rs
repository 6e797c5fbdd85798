//! What operators observe, in the real Envoy: a counter for every decision with exact
//! deltas, names that match docs/operations.md, logs without secrets, monitor mode byte for byte.

mod common;
use common::*;
use session_guard::metrics::Counter;
use std::collections::BTreeMap;

const NAME: &str = "__Host-session";

async fn snapshot(envoy: &Envoy) -> BTreeMap<String, u64> {
    envoy
        .filter_counters()
        .await
        .into_iter()
        // The build counter names the version, not a decision (checked below).
        .filter(|(k, _)| !k.starts_with("session_guard.build."))
        .collect()
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0);
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

fn want(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs
        .iter()
        .map(|(k, v)| (format!("session_guard.{k}"), *v))
        .collect()
}

/// The shared [`Mesh`]: `auth` signals what its path names (`/auth/login?user=U` signals login
/// as U), `api` signals login from an untrusted cluster; `debug` logs the filter at debug level.
async fn mesh(config: Option<String>, debug: bool) -> Mesh {
    let auth = |r: &Recorded| {
        let p = r.path_str();
        let signal = p
            .trim_start_matches("/auth/")
            .split('?')
            .next()
            .unwrap_or("")
            .to_string();
        let mut reply = Reply::ok().header("x-session-guard", signal);
        if let Some((_, u)) = p.split_once("user=") {
            reply = reply.header("x-session-guard-subject", u);
        }
        reply
    };
    let api = |_: &Recorded| Reply::ok().header("x-session-guard", "login");
    Mesh::start(auth, api, |b| {
        let b = b.component_log_level(if debug { "wasm:debug" } else { "wasm:info" });
        match config {
            Some(c) => b.filter_config(c),
            None => b,
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_decision_moves_exactly_its_counters() {
    let m = mesh(None, false).await;
    let port = m.envoy.port();
    let fresh = set_cookie_value(&send(port, Req::get("/")).await, NAME).unwrap();
    let c = |v: &str| format!("{NAME}={v}");
    let forged = {
        let mut b = fresh.clone().into_bytes();
        let i = 10;
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let cases: Vec<(&str, Req, BTreeMap<String, u64>)> = vec![
        (
            "anonymous request mints",
            Req::get("/"),
            want(&[("session.minted", 1)]),
        ),
        (
            "valid cookie",
            Req::get("/").header("cookie", c(&fresh)),
            want(&[("session.valid", 1)]),
        ),
        (
            "forged cookie",
            Req::get("/").header("cookie", c(&forged)),
            want(&[("session.invalid.forged", 1), ("session.minted", 1)]),
        ),
        (
            "unknown key",
            Req::get("/").header("cookie", c(&fresh.replacen("k1", "k7", 1))),
            want(&[("session.invalid.unknown_key", 1), ("session.minted", 1)]),
        ),
        (
            "malformed",
            Req::get("/").header("cookie", c("xyz")),
            want(&[("session.invalid.malformed", 1), ("session.minted", 1)]),
        ),
        (
            "oversized",
            Req::get("/").header("cookie", c(&"a".repeat(4097))),
            want(&[("session.invalid.oversized", 1), ("session.minted", 1)]),
        ),
        (
            "duplicate",
            Req::get("/").header("cookie", format!("{}; {}", c(&fresh), c(&fresh))),
            want(&[("session.invalid.duplicate", 1), ("session.minted", 1)]),
        ),
        (
            "url parameters",
            Req::get("/a;jsessionid=2?jsessionid=1").header("cookie", c(&fresh)),
            want(&[
                ("url.stripped", 1),
                ("url.params_removed", 2),
                ("session.valid", 1),
            ]),
        ),
        (
            "referer",
            Req::get("/")
                .header("cookie", c(&fresh))
                .header("referer", "https://x.example/?phpsessid=1"),
            want(&[("referer.scrubbed", 1), ("session.valid", 1)]),
        ),
        (
            "spoofed headers",
            Req::get("/")
                .header("cookie", c(&fresh))
                .header("x-session-id", "x")
                .header("x-session-subject", "y"),
            want(&[("spoofed_headers_removed", 2), ("session.valid", 1)]),
        ),
        (
            "login",
            Req::get("/auth/login?user=alice").header("cookie", c(&fresh)),
            want(&[("rotation.login", 1), ("session.valid", 1)]),
        ),
        (
            "privilege",
            Req::get("/auth/privilege").header("cookie", c(&fresh)),
            want(&[("rotation.privilege", 1), ("session.valid", 1)]),
        ),
        (
            "login without subject",
            Req::get("/auth/login").header("cookie", c(&fresh)),
            want(&[
                ("rotation.login", 1),
                ("signal.invalid_subject", 1),
                ("session.valid", 1),
            ]),
        ),
        (
            "unknown signal",
            Req::get("/auth/promote").header("cookie", c(&fresh)),
            want(&[("signal.unknown", 1), ("session.valid", 1)]),
        ),
        (
            "untrusted signal",
            Req::get("/api/x").header("cookie", c(&fresh)),
            want(&[("signal.untrusted", 1), ("session.valid", 1)]),
        ),
        // Last: the logout ends `fresh` on this proxy (issue 28, the logout denylist).
        (
            "logout",
            Req::get("/auth/logout").header("cookie", c(&fresh)),
            want(&[("logout", 1), ("logout.recorded", 1), ("session.valid", 1)]),
        ),
        (
            "logged out",
            Req::get("/").header("cookie", c(&fresh)),
            want(&[
                ("logout.refused", 1),
                ("session.invalid.revoked", 1),
                ("session.minted", 1),
            ]),
        ),
    ];
    for (name, req, expected) in cases {
        let before = snapshot(&m.envoy).await;
        let resp = send(port, req).await;
        assert!(resp.status < 500, "{name}: {}", resp.status);
        let after = snapshot(&m.envoy).await;
        assert_eq!(delta(&before, &after), expected, "{name}");
    }
    // Upstream cookies.
    // A new session: the cases above ended `fresh` with a logout.
    let fresh = set_cookie_value(&send(port, Req::get("/")).await, NAME).unwrap();
    m.app.respond_with(|_| {
        Reply::ok()
            .header("set-cookie", format!("{NAME}=x"))
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=1; Secure; SameSite=Lax")
    });
    let before = snapshot(&m.envoy).await;
    send(port, Req::get("/").header("cookie", c(&fresh))).await;
    let after = snapshot(&m.envoy).await;
    assert_eq!(
        delta(&before, &after),
        want(&[
            ("upstream_cookie.blocked", 1),
            ("upstream_cookie.hardened", 1),
            ("session.valid", 1)
        ])
    );
    // URL actions.
    let redirect = mesh(
        Some(r#"{"keys":[{"id":"k1","secret_env":"SESSION_GUARD_KEY"}],"url":{"action":"redirect"}}"#.into()),
        false,
    )
    .await;
    send(redirect.envoy.port(), Req::get("/?jsessionid=1")).await;
    assert_eq!(
        delta(&BTreeMap::new(), &snapshot(&redirect.envoy).await),
        want(&[("url.redirected", 1), ("url.params_removed", 1)])
    );
    let reject = mesh(
        Some(
            r#"{"keys":[{"id":"k1","secret_env":"SESSION_GUARD_KEY"}],"url":{"action":"reject"}}"#
                .into(),
        ),
        false,
    )
    .await;
    send(reject.envoy.port(), Req::get("/?jsessionid=1")).await;
    assert_eq!(
        delta(&BTreeMap::new(), &snapshot(&reject.envoy).await),
        want(&[("url.rejected", 1), ("url.params_removed", 1)])
    );
    let _ = &m.auth;
}

#[tokio::test(flavor = "multi_thread")]
async fn readme_metrics_table_matches_what_envoy_exports() {
    let m = mesh(None, false).await;
    let exported: Vec<String> = snapshot(&m.envoy).await.into_keys().collect();
    let mut declared: Vec<String> = Counter::ALL.iter().map(|c| c.name().to_string()).collect();
    declared.sort();
    assert_eq!(
        exported, declared,
        "every counter exists from the start, at 0"
    );
    let prom = m.envoy.prometheus().await;
    let build = format!(
        "session_guard_build_{}",
        env!("CARGO_PKG_VERSION").replace(['.', '-'], "_")
    );
    assert!(prom.contains(&build), "{build} in /stats/prometheus");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
            .unwrap();
    for c in Counter::ALL {
        let prom_name = c.name().replace('.', "_");
        assert!(
            prom.contains(&format!("{prom_name} 0")) || prom.contains(&format!("{prom_name}{{")),
            "{prom_name} in /stats/prometheus"
        );
        assert!(
            readme.contains(&format!(
                "| `{}` | `{prom_name}` | {} |",
                c.name(),
                c.help()
            )),
            "docs/operations.md metrics table row for {}",
            c.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_name_sessions_by_hash_and_never_leak_ids_values_or_secrets() {
    let m = mesh(None, true).await;
    let port = m.envoy.port();
    let mut secrets: Vec<String> = vec![
        TEST_KEY.to_string(),
        "session-guard-test-key-012345678".to_string(),
    ];
    let r = send(port, Req::get("/?jsessionid=PLANTEDURLID123")).await;
    let v = set_cookie_value(&r, NAME).unwrap();
    secrets.push(v.clone());
    secrets.push("PLANTEDURLID123".into());
    secrets.push(m.app.last().unwrap().header("x-session-id").unwrap());
    let forged = format!("{}AAAA", &v[..v.len() - 4]);
    secrets.push(forged.clone());
    send(
        port,
        Req::get("/").header("cookie", format!("{NAME}={forged}")),
    )
    .await;
    secrets.push(m.app.last().unwrap().header("x-session-id").unwrap());
    send(
        port,
        Req::get("/").header("cookie", format!("{NAME}={v}; {NAME}={v}")),
    )
    .await;
    let r = send(
        port,
        Req::get("/auth/login?user=alice").header("cookie", format!("{NAME}={v}")),
    )
    .await;
    secrets.push(m.auth.last().unwrap().header("x-session-id-next").unwrap());
    let after = set_cookie_value(&r, NAME).unwrap();
    secrets.push(after.clone());
    send(
        port,
        Req::get("/api/x").header("cookie", format!("{NAME}={after}")),
    )
    .await;
    send(
        port,
        Req::get("/auth/logout").header("cookie", format!("{NAME}={after}")),
    )
    .await;
    let rotated = m.envoy.wait_log("session rotated on login").await;
    assert!(
        rotated.contains("from=") && rotated.contains("to=") && rotated.contains("request_id="),
        "{rotated}"
    );
    m.envoy.wait_log("session ended on logout").await;
    let forged_line = m.envoy.wait_log("session cookie invalid: forged").await;
    assert!(
        forged_line.contains("[info]"),
        "attacks are logged at info: {forged_line}"
    );
    assert!(forged_line.contains("cookie="), "{forged_line}");
    assert!(m.envoy.wait_log("duplicate").await.contains("[info]"));
    assert!(m.envoy.wait_log("untrusted").await.contains("[info]"));
    let start = m.envoy.wait_log("configured").await;
    assert!(
        start.contains(env!("CARGO_PKG_VERSION")) && start.contains("keys=[k1]"),
        "{start}"
    );
    let log = m.envoy.log();
    for s in &secrets {
        assert!(s.len() >= 12);
        assert!(
            !log.contains(s.as_str()),
            "the log contains a secret, ID or cookie value: {s}"
        );
    }
}

/// Requests and responses through a monitor-mode filter equal those through Envoy without
/// the filter, byte for byte, except Envoy's own per-request headers.
#[tokio::test(flavor = "multi_thread")]
async fn monitor_mode_leaves_traffic_byte_for_byte() {
    let cfg = r#"{"mode":"monitor","keys":[{"id":"k1","secret_env":"SESSION_GUARD_KEY"}],"url":{"action":"reject"},"signal":{"trusted_clusters":["auth"]}}"#;
    let monitor = mesh(Some(cfg.into()), false).await;
    let bare_app = Upstream::start().await;
    let bare_auth = Upstream::start().await;
    let bare = EnvoyBuilder::shipped("envoy/ingress.yaml")
        .upstream("app", &bare_app)
        .upstream("auth", &bare_auth)
        .edit(|v| {
            // The same config without the wasm filter.
            let filters = &mut v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
                [0]["typed_config"]["http_filters"];
            let seq = filters.as_sequence_mut().unwrap();
            seq.retain(|f| f["name"].as_str() != Some("envoy.filters.http.wasm"));
        })
        .start()
        .await;
    for up in [&monitor.app, &bare_app] {
        up.respond_with(|_| {
            Reply::ok()
                .header("set-cookie", format!("{NAME}=upstream"))
                .header("set-cookie", "theme=dark")
                .header("cache-control", "public, max-age=60")
        });
    }
    for up in [&monitor.auth, &bare_auth] {
        up.respond_with(|_| {
            Reply::ok()
                .header("x-session-guard", "login")
                .header("x-session-guard-subject", "alice")
        });
    }
    let reqs = vec![
        Req::get("/a;jsessionid=1?jsessionid=2&x=%zz"),
        Req::get("/")
            .header("cookie", format!("{NAME}=forged; a=1"))
            .header("cookie", "b=2"),
        Req::get("/")
            .header("x-session-id", "spoof")
            .header("referer", "https://h.example/?phpsessid=1"),
        Req::get("/auth/login").header("cookie", "x=1"),
    ];
    let volatile = [
        "x-request-id",
        "date",
        "x-envoy-upstream-service-time",
        "x-envoy-expected-rq-timeout-ms",
    ];
    let strip = |h: &Headers| -> Headers {
        h.iter()
            .filter(|(n, _)| !volatile.contains(&n.as_str()))
            .cloned()
            .collect()
    };
    for req in reqs {
        let a = send(monitor.envoy.port(), req.clone()).await;
        let b = send(bare.port(), req.clone()).await;
        assert_eq!(
            (a.status, strip(&a.headers), &a.body),
            (b.status, strip(&b.headers), &b.body),
            "{}",
            req.path
        );
        let (ua, ub) = if req.path.starts_with("/auth") {
            (monitor.auth.last().unwrap(), bare_auth.last().unwrap())
        } else {
            (monitor.app.last().unwrap(), bare_app.last().unwrap())
        };
        assert_eq!(
            (&ua.path, strip(&ua.headers), &ua.body),
            (&ub.path, strip(&ub.headers), &ub.body),
            "{}",
            req.path
        );
    }
    let counted = snapshot(&monitor.envoy).await;
    for (k, v) in [
        ("session_guard.url.rejected", 1),
        ("session_guard.session.invalid.malformed", 1),
        ("session_guard.spoofed_headers_removed", 1),
        ("session_guard.referer.scrubbed", 1),
        ("session_guard.rotation.login", 1),
        ("session_guard.upstream_cookie.blocked", 3),
    ] {
        assert_eq!(counted.get(k).copied(), Some(v), "{k}");
    }
}
