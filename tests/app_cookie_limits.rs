//! App cookie binding (issue 12) at its limits in the real Envoy: the bound on bindings per
//! session, forged mesh cookies, monitor mode byte for byte, and hostile bytes and sizes in app
//! cookies (Envoy must keep serving: a panic in the VM would break every later request).
#![cfg(test)]

mod common;
use common::*;

fn cfg(extra: &str) -> String {
    format!(r#"{{"keys":[{{"id":"k1","secret_env":"SESSION_GUARD_KEY"}}]{extra}}}"#)
}

/// The app: `/set/NAME/VALUE` sets that cookie; `/big/NAME/N` sets NAME to N bytes; `/raw`
/// sets app cookies with bytes 0x80-0xFF, an empty value and no `=`; else `200 ok`.
fn app_responder(r: &Recorded) -> Reply {
    let path = r.path_str();
    let parts: Vec<&str> = path.split('/').skip(2).collect();
    match (path.split('/').nth(1), parts.as_slice()) {
        (Some("set"), [name, value]) => {
            Reply::ok().header("set-cookie", format!("{name}={value}; Path=/"))
        }
        (Some("big"), [name, n]) => Reply::ok().header(
            "set-cookie",
            format!("{name}={}; Path=/", "v".repeat(n.parse().unwrap_or(1))),
        ),
        (Some("raw"), _) => Reply::ok()
            .header(
                "set-cookie",
                b"connect.sid=\x80\xff\xc3\xa9raw; Path=/".as_slice(),
            )
            .header("set-cookie", "PHPSESSID=; Path=/")
            .header("set-cookie", "JSESSIONID; Path=/")
            .header("set-cookie", "sessionid=\"quoted\"; Path=/"),
        _ => Reply::ok(),
    }
}

async fn ingress(config: String) -> (Upstream, Envoy) {
    let app = Upstream::start().await;
    app.respond_with(app_responder);
    let envoy = EnvoyBuilder::shipped("envoy/ingress.yaml")
        .upstream("app", &app)
        .filter_config(config)
        .start()
        .await;
    (app, envoy)
}

fn app_cookie(app: &Upstream) -> Option<String> {
    app.last()
        .expect("a request reached the app")
        .header("cookie")
}

#[tokio::test(flavor = "multi_thread")]
async fn at_most_eight_bindings_per_session_the_oldest_dropped() {
    let names: Vec<String> = (0..10).map(|i| format!("app{i}")).collect();
    let extra = serde_json::to_string(&names).unwrap();
    let (app, envoy) = ingress(cfg(&format!(r#","app_cookies":{{"extra_names":{extra}}}"#))).await;
    let mut b = Browser::new(envoy.port(), Wire::H1);
    // Long values: the mesh cookie records a MAC of each, never the value.
    let value = |i: usize| format!("{i}{}", "x".repeat(1000));
    for (i, name) in names.iter().enumerate() {
        b.get(&format!("/set/{name}/{}", value(i))).await;
        let mesh = b.jar.get(SESSION_COOKIE).expect("mesh cookie");
        assert!(mesh.len() <= 4096, "mesh cookie of {} bytes", mesh.len());
        assert!(
            !mesh.contains("xxxxxxxx"),
            "values are never stored in clear"
        );
    }
    assert_eq!(envoy.counter("session_guard.app_cookie.bound").await, 10);
    assert_eq!(
        envoy.counter("session_guard.app_cookie.over_limit").await,
        2
    );
    b.get("/page").await;
    let got = cookie_pairs(&app_cookie(&app).unwrap_or_default());
    let expected: Vec<(String, String)> = (2..10).map(|i| (names[i].clone(), value(i))).collect();
    assert_eq!(got, expected, "app0 and app1, the oldest, were dropped");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_mesh_cookie_binds_nothing() {
    let (app, envoy) = ingress(cfg("")).await;
    let mut b = Browser::new(envoy.port(), Wire::H1);
    b.get("/set/connect.sid/good").await;
    b.get("/page").await;
    assert_eq!(app_cookie(&app).as_deref(), Some("connect.sid=good"));
    let genuine = b.jar.get(SESSION_COOKIE).unwrap().to_owned();
    // Flip one byte at positions spread over the whole value (key id, fields, bindings, MAC).
    let step = (genuine.len() / 12).max(1);
    for i in (6..genuine.len()).step_by(step) {
        let mut bytes = genuine.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(bytes).unwrap();
        let cookie = format!("{SESSION_COOKIE}={forged}; connect.sid=good");
        let resp = send(envoy.port(), Req::get("/page").header("cookie", cookie)).await;
        assert_eq!(resp.status, 200);
        assert_eq!(app_cookie(&app), None, "byte {i} flipped: nothing passes");
    }
    // The genuine one still works.
    b.get("/page").await;
    assert_eq!(app_cookie(&app).as_deref(), Some("connect.sid=good"));
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_mode_counts_and_changes_nothing() {
    let (app, envoy) = ingress(cfg(r#","mode":"monitor""#)).await;
    let cookie = "connect.sid=evil; lang=en; PHPSESSID=x";
    let resp = send(
        envoy.port(),
        Req::get("/set/connect.sid/new").header("cookie", cookie),
    )
    .await;
    assert_eq!(app_cookie(&app).as_deref(), Some(cookie), "byte for byte");
    assert_eq!(
        resp.header_all("set-cookie"),
        vec!["connect.sid=new; Path=/"],
        "no mesh cookie, no change to the app's"
    );
    assert_eq!(envoy.counter("session_guard.app_cookie.unbound").await, 2);
    // Over HTTP/2 as well.
    send_h2(envoy.port(), Req::get("/page").header("cookie", cookie)).await;
    assert_eq!(app_cookie(&app).as_deref(), Some(cookie));
}

/// Requests a browser cannot make but an attacker can, one after another on one Envoy worker.
fn hostile_cookies(mesh: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let m = format!("{SESSION_COOKIE}={mesh}");
    out.push(format!("{m}; connect.sid=").into_bytes());
    out.push(
        [
            m.as_bytes(),
            b"; connect.sid=\x80\xff\xc3\xa9raw; PHPSESSID=\xfe",
        ]
        .concat(),
    );
    out.push([b"connect.sid=\xff\xfe; ".as_slice(), m.as_bytes()].concat());
    out.push(format!("{m}; connect.sid={}", "a".repeat(4096)).into_bytes());
    out.push(format!("{m}; {}", "connect.sid=b; ".repeat(3000)).into_bytes());
    let many: Vec<String> = (0..3000).map(|i| format!("c{i}={i}")).collect();
    out.push(format!("{m}; {}", many.join("; ")).into_bytes());
    out.push(format!("{m}; {}", ";".repeat(4000)).into_bytes());
    out.push(format!("{m}; =connect.sid; connect.sid; ==; connect.sid==x").into_bytes());
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_app_cookies_never_break_envoy() {
    let (app, envoy) = ingress(cfg("")).await;
    let mut b = Browser::new(envoy.port(), Wire::H1);
    b.get("/set/connect.sid/good").await;
    // Hostile Set-Cookie lines from the app, and a 4 KiB app cookie to bind.
    for path in ["/raw", "/big/PHPSESSID/4096", "/big/JSESSIONID/8000"] {
        let resp = b.get(path).await;
        assert_eq!(resp.status, 200, "{path}");
        if let Some(mesh) = b.jar.get(SESSION_COOKIE) {
            assert!(
                mesh.len() <= 4096,
                "{path}: mesh cookie of {} bytes",
                mesh.len()
            );
        }
    }
    // `/raw` set connect.sid anew: bind `good` again.
    b.get("/set/connect.sid/good").await;
    let mesh = b.jar.get(SESSION_COOKIE).unwrap().to_owned();
    for (i, cookie) in hostile_cookies(&mesh).into_iter().enumerate() {
        for wire in [Wire::H1, Wire::H2] {
            let req = Req::get("/page").header("cookie", &cookie);
            let sent = match wire {
                Wire::H1 => try_send(envoy.port(), req).await,
                Wire::H2 => try_send_h2(envoy.port(), req).await,
            };
            // Envoy may refuse a header too large (431) or reset the stream; never a 5xx.
            if let Ok(resp) = sent {
                assert!(resp.status < 500, "case {i} {wire:?}: {}", resp.status);
            }
        }
        // After each, the worker still serves and the binding still holds.
        app.clear();
        b.jar.set("connect.sid", "good");
        let resp = b.get("/page").await;
        assert_eq!(resp.status, 200, "after case {i}");
        let got = cookie_pairs(&app_cookie(&app).unwrap_or_default());
        assert!(
            got.contains(&("connect.sid".to_owned(), "good".to_owned())),
            "after case {i}: {got:?}"
        );
    }
    let log = envoy.log();
    assert!(!log.contains("panicked"), "the filter panicked");
}
