//! Two carriers the hostile review found on responses: targeted cache fields that let a CDN
//! store a response carrying the mesh cookie, and a nameless upstream cookie that browsers
//! send back as the mesh cookie.

// Test code throughout (always true under `cargo test`): so clippy.toml's allow-*-in-tests also
// cover the helpers here (rust-clippy#13981).
#![cfg(test)]

mod common;
use common::*;

const NAME: &str = "__Host-session";

async fn gateway(app: &Upstream) -> Envoy {
    EnvoyBuilder::shipped("envoy/ingress.yaml")
        .upstream("app", app)
        .start()
        .await
}

const TARGETED: [&str; 5] = [
    "cdn-cache-control",
    "surrogate-control",
    "cloudflare-cdn-cache-control",
    "vercel-cdn-cache-control",
    "edge-control",
];

#[tokio::test(flavor = "multi_thread")]
async fn targeted_cache_fields_become_no_store_when_the_mesh_sets_its_cookie() {
    let app = Upstream::start().await;
    // The page sets a cookie of its own, so it needs a session: the mesh commits one there
    // (a shared-cacheable response without a cookie of its own gets none, below).
    app.respond_with(|r| {
        let mut reply = Reply::ok().header("cache-control", "public, max-age=600");
        for t in TARGETED {
            reply = reply.header(t, "max-age=600");
        }
        if r.path_str() == "/page" {
            reply = reply.header("set-cookie", "theme=dark; Secure; SameSite=Lax");
        }
        reply
    });
    let envoy = gateway(&app).await;
    // Without a cookie of its own the same response is shared-cacheable: no session is
    // committed on it and it passes untouched (issue 24).
    let r = send(envoy.port(), Req::get("/asset")).await;
    assert!(set_cookie(&r, NAME).is_none());
    assert_eq!(
        r.header("cache-control").as_deref(),
        Some("public, max-age=600")
    );
    for t in TARGETED {
        assert_eq!(r.header(t).as_deref(), Some("max-age=600"), "{t}");
    }
    for h2 in [false, true] {
        // No session: the mesh commits one and sets its cookie on this response.
        let r = if h2 {
            send_h2(envoy.port(), Req::get("/page")).await
        } else {
            send(envoy.port(), Req::get("/page")).await
        };
        let cookie = set_cookie_value(&r, NAME).expect("minted");
        let cc = r.header("cache-control").unwrap();
        assert!(cc.contains("private") && !cc.contains("public"), "{cc}");
        for t in TARGETED {
            assert_eq!(r.header(t).as_deref(), Some("no-store"), "{t} (h2={h2})");
        }
        // A valid session that needs no re-issue: the response carries no mesh cookie and
        // the upstream's cache fields pass untouched.
        let r = send(
            envoy.port(),
            Req::get("/page").header("cookie", cookie_header(&[(NAME, &cookie)])),
        )
        .await;
        assert!(set_cookie(&r, NAME).is_none());
        for t in TARGETED {
            assert_eq!(r.header(t).as_deref(), Some("max-age=600"), "{t} untouched");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nameless_upstream_cookie_carrying_the_mesh_cookie_is_blocked() {
    let app = Upstream::start().await;
    let planted = [
        "=__Host-session=v1.k1.AAAA.BBBB; Path=/; Secure",
        " = __HOST-SESSION = v1.k1.AAAA.BBBB; Path=/; Secure",
        "=__host-session; Path=/",
        "__Host-session; Path=/",
    ];
    app.respond_with(move |_| {
        let mut r = Reply::ok().header("set-cookie", "theme=dark; Path=/; Secure; SameSite=Lax");
        for p in planted {
            r = r.header("set-cookie", p);
        }
        r
    });
    let envoy = gateway(&app).await;
    for h2 in [false, true] {
        let r = if h2 {
            send_h2(envoy.port(), Req::get("/reflect")).await
        } else {
            send(envoy.port(), Req::get("/reflect")).await
        };
        let all = r.header_all("set-cookie");
        assert_eq!(all.len(), 2, "theme and the mesh's own: {all:?}");
        assert!(all.iter().any(|c| c.starts_with("theme=dark")));
        assert!(all.iter().any(|c| c.starts_with("__Host-session=v2.")));
        assert!(
            !all.iter().any(|c| c.trim_start().starts_with('=')),
            "{all:?}"
        );
    }
    assert_eq!(
        envoy.counter("session_guard.upstream_cookie.blocked").await,
        2 * planted.len() as u64
    );
}
