//! A session belongs to the host (or tenant) that minted it: on a gateway that serves several
//! tenants with one plugin and one key ring, alice's authenticated cookie from tenant A never
//! carries her identity into tenant B.

// Test code throughout (always true under `cargo test`): so clippy.toml's allow-*-in-tests also
// cover the helpers here (rust-clippy#13981).
#![cfg(test)]

mod common;
use common::*;

const A: &str = "tenant-a.example.com";
const B: &str = "tenant-b.example.com";

async fn gateway(extra: &str) -> Mesh {
    let cfg = format!(
        r#"{{"keys":[{{"id":"k1","secret_env":"SESSION_GUARD_KEY"}}],"signal":{{"trusted_clusters":["auth"]}}{extra}}}"#
    );
    Mesh::start(
        |_| {
            Reply::ok()
                .header("x-session-guard", "login")
                .header("x-session-guard-subject", "alice")
        },
        |_| Reply::ok(),
        move |b| b.filter_config(cfg).component_log_level("wasm:info"),
    )
    .await
}

async fn get(m: &Mesh, host: &str, path: &str, cookie: Option<&str>, h2: bool) -> Resp {
    let mut req = Req::get(path).header("host", host);
    if let Some(c) = cookie {
        req = req.header("cookie", format!("{SESSION_COOKIE}={c}"));
    }
    if h2 {
        send_h2(m.envoy.port(), req).await
    } else {
        send(m.envoy.port(), req).await
    }
}

/// alice logs in on `host` and gets her authenticated cookie.
async fn alice_on(m: &Mesh, host: &str) -> String {
    let anon = set_cookie_value(&get(m, host, "/", None, false).await, SESSION_COOKIE).unwrap();
    let r = get(m, host, "/auth/login", Some(&anon), false).await;
    set_cookie_value(&r, SESSION_COOKIE).expect("rotated on login")
}

/// (subject the app saw, whether the mesh set a new cookie)
async fn app_sees(m: &Mesh, host: &str, cookie: &str, h2: bool) -> (Option<String>, bool) {
    m.app.clear();
    let r = get(m, host, "/me", Some(cookie), h2).await;
    assert_eq!(r.status, 200);
    let seen = m.app.last().unwrap();
    assert!(seen
        .header("cookie")
        .is_none_or(|c| !c.contains(SESSION_COOKIE)));
    (
        seen.header("x-session-subject"),
        set_cookie(&r, SESSION_COOKIE).is_some(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cookie_replayed_to_another_tenant_is_refused() {
    let m = gateway("").await;
    let alice = alice_on(&m, A).await;
    let mut refused = 0;
    for h2 in [false, true] {
        // The host that minted it, however Envoy is asked for it.
        for host in [A, "tenant-a.example.com:443", "Tenant-A.Example.COM"] {
            assert_eq!(
                app_sees(&m, host, &alice, h2).await.0.as_deref(),
                Some("alice"),
                "{host}"
            );
        }
        // Any other host: no identity, a fresh anonymous session instead.
        for host in [
            B,
            "tenant-b.example.com:8443",
            "TENANT-B.example.com.",
            "tenant-a.example.org",
            // Another host to Envoy's exact domains (issue 28): never tenant A's scope.
            "tenant-a.example.com.",
            "tenant-a.example.com:.tenant-b.example.com",
        ] {
            let (subject, new_cookie) = app_sees(&m, host, &alice, h2).await;
            assert_eq!(subject, None, "{host} (h2={h2})");
            assert!(new_cookie, "{host}: a new anonymous session replaces it");
            refused += 1;
        }
    }
    assert_eq!(
        m.envoy
            .counter("session_guard.session.invalid.wrong_scope")
            .await,
        refused
    );
    m.envoy
        .wait_log("session cookie invalid: wrong_scope session=")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_scope_is_shared_by_the_hosts_of_one_tenant() {
    let m = gateway(r#","cookie":{"scope":"tenant-a"}"#).await;
    let alice = alice_on(&m, "www.tenant-a.example").await;
    for h2 in [false, true] {
        for host in ["www.tenant-a.example", "shop.tenant-a.example", B] {
            assert_eq!(
                app_sees(&m, host, &alice, h2).await.0.as_deref(),
                Some("alice"),
                "{host}"
            );
        }
    }
    assert_eq!(
        m.envoy
            .counter("session_guard.session.invalid.wrong_scope")
            .await,
        0
    );
    // The same key ring with another scope (another plugin instance) refuses it.
    let other = gateway(r#","cookie":{"scope":"tenant-b"}"#).await;
    assert_eq!(
        app_sees(&other, "www.tenant-a.example", &alice, false)
            .await
            .0,
        None
    );
    assert_eq!(
        other
            .envoy
            .counter("session_guard.session.invalid.wrong_scope")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_mode_counts_a_replay_without_refusing_it() {
    let m = gateway(r#","mode":"monitor""#).await;
    // In monitor mode nothing is written, so the session is minted and signed by an enforcing
    // gateway with the same keys.
    let enforce = gateway("").await;
    let alice = alice_on(&enforce, A).await;
    let r = get(&m, B, "/me", Some(&alice), false).await;
    assert_eq!(r.status, 200);
    assert!(
        set_cookie(&r, SESSION_COOKIE).is_none(),
        "monitor mode changes nothing"
    );
    let seen = m.app.last().unwrap();
    assert_eq!(
        seen.header("x-session-subject"),
        None,
        "no session headers of its own"
    );
    assert!(
        seen.header("cookie").unwrap().contains(&alice),
        "the cookie passes as sent"
    );
    assert_eq!(
        m.envoy
            .counter("session_guard.session.invalid.wrong_scope")
            .await,
        1
    );
}

/// A gateway as multi-tenant ingresses are configured: tenant A's exact domain (with any port,
/// as Istio writes it), tenant B's wildcard, and a default virtual host. Each virtual host
/// tells the app who routed the request (`x-vhost`). `strip_dot`: the HCM's
/// `strip_trailing_host_dot`.
async fn routed_gateway(strip_dot: bool) -> Mesh {
    let cfg = r#"{"keys":[{"id":"k1","secret_env":"SESSION_GUARD_KEY"}],"signal":{"trusted_clusters":["auth"]}}"#;
    Mesh::start(
        |_| {
            Reply::ok()
                .header("x-session-guard", "login")
                .header("x-session-guard-subject", "alice")
        },
        |_| Reply::ok(),
        move |b| {
            b.filter_config(cfg)
                .component_log_level("wasm:info")
                .edit(move |root| {
                    let hcm = &mut root["static_resources"]["listeners"][0]["filter_chains"][0]
                        ["filters"][0]["typed_config"];
                    hcm["strip_trailing_host_dot"] = serde_yaml::Value::Bool(strip_dot);
                    let vhost = |name: &str, domains: &str| -> serde_yaml::Value {
                        serde_yaml::from_str(&format!(
                            r#"{{name: {name}, domains: {domains},
                                request_headers_to_add: [{{header: {{key: x-vhost, value: {name}}}}}],
                                routes: [{{match: {{prefix: /auth/}}, route: {{cluster: auth}}}},
                                         {{match: {{prefix: /}}, route: {{cluster: app}}}}]}}"#
                        ))
                        .unwrap()
                    };
                    hcm["route_config"]["virtual_hosts"] = serde_yaml::Value::Sequence(vec![
                        vhost("tenant-a", r#"["a.example", "a.example:*"]"#),
                        vhost("tenant-b", r#"["*.b.example"]"#),
                        vhost("default", r#"["*"]"#),
                    ]);
                })
        },
    )
    .await
}

/// (virtual host that routed it, subject the app saw)
async fn routed(m: &Mesh, host: &str, cookie: &str, h2: bool) -> (String, Option<String>) {
    m.app.clear();
    let r = get(m, host, "/me", Some(cookie), h2).await;
    assert_eq!(r.status, 200, "{host}");
    let seen = m.app.last().unwrap();
    (
        seen.header("x-vhost").unwrap(),
        seen.header("x-session-subject"),
    )
}

/// Issue 28: the scope is the host Envoy routed. Tenant A's session replayed with an
/// `:authority` that Envoy routes to tenant B's wildcard or to the default virtual host never
/// carries alice's identity there; a port and the case still reach tenant A.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_envoy_routes_elsewhere_is_another_scope() {
    let m = routed_gateway(false).await;
    let anon = set_cookie_value(
        &get(&m, "a.example", "/", None, false).await,
        SESSION_COOKIE,
    )
    .unwrap();
    let r = get(&m, "a.example", "/auth/login", Some(&anon), false).await;
    let alice = set_cookie_value(&r, SESSION_COOKIE).unwrap();
    for (host, vhost, h2s) in [
        ("a.example", "tenant-a", &[false, true][..]),
        ("A.Example:443", "tenant-a", &[false, true]),
        ("a.example:8443", "tenant-a", &[false]),
    ] {
        for &h2 in h2s {
            let (v, subject) = routed(&m, host, &alice, h2).await;
            assert_eq!(
                (v.as_str(), subject.as_deref()),
                (vhost, Some("alice")),
                "{host}"
            );
        }
    }
    let mut refused = 0;
    for (host, vhost, h2s) in [
        ("a.example:.b.example", "tenant-b", &[false][..]),
        ("a.example:443.b.example", "tenant-b", &[false]),
        // Istio-style `a.example:*` is a prefix wildcard: Envoy routes this to tenant A, whose
        // scope it still is not (a host no browser sends: refused, fail closed).
        ("a.example:443.b.example:443", "tenant-a", &[false]),
        ("a.example.", "default", &[false, true]),
        ("a.example.:443", "default", &[false]),
        ("a.example:", "default", &[false]),
    ] {
        for &h2 in h2s {
            let (v, subject) = routed(&m, host, &alice, h2).await;
            assert_eq!(v, vhost, "{host}: where Envoy routes it");
            assert_eq!(subject, None, "{host} (h2={h2}): no identity from tenant A");
            refused += 1;
        }
    }
    assert_eq!(
        m.envoy
            .counter("session_guard.session.invalid.wrong_scope")
            .await,
        refused
    );
}

/// With Envoy's `strip_trailing_host_dot`, the HCM removes the dot before routing and before
/// any filter: `a.example.` is routed to tenant A and the filter reads `a.example` too.
#[tokio::test(flavor = "multi_thread")]
async fn envoys_strip_trailing_host_dot_reaches_the_filter() {
    let m = routed_gateway(true).await;
    let anon = set_cookie_value(
        &get(&m, "a.example", "/", None, false).await,
        SESSION_COOKIE,
    )
    .unwrap();
    let r = get(&m, "a.example", "/auth/login", Some(&anon), false).await;
    let alice = set_cookie_value(&r, SESSION_COOKIE).unwrap();
    for h2 in [false, true] {
        let (v, subject) = routed(&m, "a.example.", &alice, h2).await;
        assert_eq!(
            (v.as_str(), subject.as_deref()),
            ("tenant-a", Some("alice"))
        );
    }
    let (v, subject) = routed(&m, "a.example:.b.example", &alice, false).await;
    assert_eq!((v.as_str(), subject), ("tenant-b", None));
}
