//! A hostile corpus through the real Envoy with two workers: every header the filter reads
//! gets bytes 0x80-0xFF, sizes up to Envoy's limits, storms of cookies and parameters. Then
//! every worker must still serve valid sessions: no VM was lost to a panic.
// Test code throughout (always true under `cargo test`): so clippy.toml's allow-*-in-tests also
// cover the helpers here, which fail like tests do (rust-clippy#13981).
#![cfg(test)]

mod common;
use common::*;
use std::collections::BTreeSet;

const NAME: &str = "__Host-session";

/// The shared [`Mesh`] with two workers (its `api` upstream is never called here).
async fn mesh() -> Mesh {
    // The auth upstream answers with whatever hostile signal and subject the test asks for,
    // passed (hex-encoded, so the request itself stays clean) in the query.
    let auth = |r: &Recorded| {
        let p = r.path_str();
        let hex = |k: &str| -> Option<Vec<u8>> {
            let v = p.split(&format!("{k}=")).nth(1)?.split('&').next()?;
            (0..v.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(v.get(i..i + 2)?, 16).ok())
                .collect()
        };
        let mut reply = Reply::ok();
        if let Some(s) = hex("signal") {
            reply = reply.header("x-session-guard", s);
        }
        if let Some(s) = hex("subject") {
            reply = reply.header("x-session-guard-subject", s);
        }
        if let Some(n) = hex("cookies") {
            for i in 0..n[0] as usize * 10 {
                reply = reply.header("set-cookie", format!("c{i}=\"v\"; Path=/; Secure; ; ;="));
            }
            reply = reply.header("set-cookie", b"\xff\xfe=\x80; SameSite=\xc3\xa9");
        }
        reply
    };
    Mesh::start(
        auth,
        |_| Reply::ok(),
        // Raw bytes must reach the filter as sent: without Envoy's path normalization (on in
        // the shipped ingress), which would percent-encode bytes 0x80-0xFF before it runs.
        |b| {
            b.concurrency(2)
                .component_log_level("wasm:info")
                .edit(|root| {
                    let hcm = &mut root["static_resources"]["listeners"][0]["filter_chains"][0]
                        ["filters"][0]["typed_config"];
                    hcm["normalize_path"] = serde_yaml::Value::Bool(false);
                    hcm["merge_slashes"] = serde_yaml::Value::Bool(false);
                })
        },
    )
    .await
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every header the filter reads, hostile, over HTTP/1.1 and HTTP/2, then every worker
/// still works.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_corpus_never_breaks_a_worker() {
    let m = mesh().await;
    let port = m.envoy.port();
    let good = set_cookie_value(&send(port, Req::get("/")).await, NAME).unwrap();
    let high: Vec<u8> = (0x80..=0xffu8).collect();

    let mut requests: Vec<(&str, Req)> = vec![
        (
            "cookie with 0x80-0xFF",
            Req::get("/").header(
                "cookie",
                [
                    b"a=".to_vec(),
                    high.clone(),
                    b"; __Host-session=".to_vec(),
                    high.clone(),
                ]
                .concat(),
            ),
        ),
        (
            "referer with 0x80-0xFF",
            Req::get("/").header(
                "referer",
                [b"https://h/\xff?jsessionid=".to_vec(), high.clone()].concat(),
            ),
        ),
        (
            "spoofed header with 0x80-0xFF",
            Req::get("/").header("x-session-id", &high),
        ),
        (
            "thousands of cookies",
            Req::get("/").header(
                "cookie",
                (0..3000)
                    .map(|i| format!("c{i}=v"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        ),
        (
            "mesh cookie among thousands",
            Req::get("/").header(
                "cookie",
                format!(
                    "{}; {NAME}={good}",
                    (0..2000)
                        .map(|i| format!("c{i}=v"))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ),
        ),
        (
            "nearly a hundred cookie headers (Envoy allows 100)",
            (0..95).fold(Req::get("/"), |r, i| r.header("cookie", format!("k{i}=v"))),
        ),
        (
            "malformed and quoted cookies",
            Req::get("/").header(
                "cookie",
                format!("=; ;;; {NAME}; \"{NAME}\"=x; {NAME}=\"{good}\"; a=\"b; c==d"),
            ),
        ),
        (
            "oversized cookie near Envoy's limit",
            Req::get("/").header("cookie", format!("{NAME}={}", "A".repeat(58_000))),
        ),
        (
            "thousands of parameters",
            Req::get(&format!("/?{}", "jsessionid=1&x;=;&".repeat(2000))),
        ),
        (
            "60 KB query",
            Req::get(&format!("/?q={}&jsessionid=2", "%zz".repeat(19_000))),
        ),
        (
            "semicolon storm",
            Req::get(&format!("/{}", ";jsessionid=1;=;;".repeat(2000))),
        ),
        (
            "upgrade request",
            Req::get("/ws")
                .header("connection", "Upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ),
        (
            "signal with 0x80-0xFF",
            Req::get(&format!("/auth/x?signal={}", hex(&high))),
        ),
        (
            "login with a 0x80-0xFF subject",
            Req::get(&format!(
                "/auth/x?signal={}&subject={}",
                hex(b"login"),
                hex(&high)
            )),
        ),
        (
            "login with a huge subject",
            Req::get(&format!(
                "/auth/x?signal={}&subject={}",
                hex(b"login"),
                hex(&[b'a'; 5000])
            )),
        ),
        (
            "empty signal",
            Req::get(&format!("/auth/x?signal={}", hex(b" "))),
        ),
        (
            "ninety hostile upstream cookies (Envoy allows 100 headers)",
            Req::get(&format!("/auth/x?cookies={}", hex(&[9]))),
        ),
    ];
    // Repeat so both workers see every case (connections are spread across workers).
    let mut statuses = BTreeSet::new();
    for round in 0..3 {
        for (name, req) in &requests {
            for h2 in [false, true] {
                let resp = if h2 {
                    try_send_h2(port, req.clone()).await
                } else {
                    try_send(port, req.clone()).await
                };
                let status = resp
                    .map(|r| r.status)
                    .unwrap_or_else(|e| panic!("{name} (h2={h2}, round {round}): {e}"));
                assert!(status < 500, "{name} (h2={h2}): {status}");
                statuses.insert(status);
            }
        }
    }
    requests.clear();
    // Paths with 0x80-0xFF reach the filter over HTTP/2 (Envoy's HTTP/1 codec refuses them).
    for path in [
        &b"/\xff\xfe;jsessionid=\x80?jsessionid=\xc3&a=\xff"[..],
        b"/\x80",
        b"/?\xff",
    ] {
        for _ in 0..4 {
            let cookie = [format!("{NAME}=").into_bytes(), high.clone()].concat();
            assert_eq!(
                raw_h2(
                    port,
                    "GET",
                    path,
                    &[("cookie", &cookie), ("referer", &high)]
                )
                .await,
                Ok(200)
            );
        }
    }
    let seen = m
        .app
        .requests()
        .into_iter()
        .find(|r| r.path.starts_with(b"/\xff\xfe"))
        .unwrap();
    assert_eq!(seen.path, b"/\xff\xfe?a=\xff");
    // A request body of several MiB passes byte for byte (the filter never buffers it).
    let body: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    for h2 in [false, true] {
        let req = Req::post("/upload?jsessionid=1", body.clone())
            .header("cookie", format!("{NAME}={good}"));
        let resp = if h2 {
            send_h2(port, req).await
        } else {
            send(port, req).await
        };
        assert_eq!(resp.status, 200);
        let got = m.app.last().unwrap();
        assert_eq!(got.path_str(), "/upload");
        assert!(
            got.body == body,
            "body of {} bytes arrived as {} bytes",
            body.len(),
            got.body.len()
        );
    }

    // After the corpus: every worker still serves valid sessions correctly. Many fresh
    // connections land on both workers.
    let (_, id) = {
        send(
            port,
            Req::get("/").header("cookie", format!("{NAME}={good}")),
        )
        .await;
        ((), m.app.last().unwrap().header("x-session-id").unwrap())
    };
    let per_worker = |c: &std::collections::BTreeMap<String, u64>| -> Vec<u64> {
        (0..2)
            .map(|w| {
                c.iter()
                    .filter(|(k, _)| {
                        k.starts_with("listener.127.0.0.1_")
                            && k.ends_with(&format!("worker_{w}.downstream_cx_total"))
                    })
                    .map(|(_, v)| *v)
                    .sum()
            })
            .collect()
    };
    let before = per_worker(&m.envoy.counters().await);
    for i in 0..40 {
        let resp = if i % 2 == 0 {
            send(
                port,
                Req::get("/after").header("cookie", format!("{NAME}={good}")),
            )
            .await
        } else {
            send_h2(
                port,
                Req::get("/after").header("cookie", format!("{NAME}={good}")),
            )
            .await
        };
        assert_eq!(resp.status, 200, "request {i} after the corpus");
        assert_eq!(
            m.app.last().unwrap().header("x-session-id").as_deref(),
            Some(id.as_str())
        );
        let fresh = send(port, Req::get("/after")).await;
        assert!(
            set_cookie_value(&fresh, NAME).is_some(),
            "minting still works"
        );
    }
    let after = per_worker(&m.envoy.counters().await);
    assert!(
        after[0] > before[0] && after[1] > before[1],
        "both workers served the checks: {before:?} -> {after:?}"
    );
    let log = m.envoy.log();
    for bad in [
        "panicked",
        "Function: proxy_on",
        "wasm trap",
        "Wasm VM failed",
    ] {
        assert!(
            !log.contains(bad),
            "Envoy log contains {bad:?}:\n{}",
            tail(&log, 30)
        );
    }
    let counters = m.envoy.counters().await;
    let failures: Vec<_> = counters
        .iter()
        .filter(|(k, v)| {
            k.starts_with("wasm.") && (k.contains("fail") || k.contains("crash")) && **v > 0
        })
        .collect();
    assert!(failures.is_empty(), "wasm failures: {failures:?}");
    assert!(
        m.envoy
            .counter("session_guard.signal.invalid_subject")
            .await
            >= 6
    );
    assert!(
        m.envoy
            .counter("session_guard.session.invalid.oversized")
            .await
            >= 6
    );
    let _ = &m.auth;
    assert!(statuses.iter().all(|s| *s < 500));
}
