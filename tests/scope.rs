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
        for host in [
            A,
            "tenant-a.example.com:443",
            "Tenant-A.Example.COM",
            "tenant-a.example.com.",
        ] {
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
    let (subject, new_cookie) = app_sees(&m, B, &alice, false).await;
    assert!(!new_cookie, "monitor mode changes nothing");
    assert_eq!(
        subject, None,
        "monitor mode forwards no session headers of its own"
    );
    let seen = m.app.last().unwrap();
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
