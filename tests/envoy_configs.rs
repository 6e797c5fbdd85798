//! The shipped Envoy configurations: they validate, they route, and Envoy refuses to serve
//! when the filter's configuration is invalid, naming the field.
// Test code throughout (always true under `cargo test`): so clippy.toml's allow-*-in-tests also
// cover the helpers here, which fail like tests do (rust-clippy#13981).
#![cfg(test)]

mod common;

use common::*;

// ---------------------------------------------------------------------------------------------
// (a) validation

fn shipped_configs() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("envoy");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".yaml"))
        .map(|n| format!("envoy/{n}"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn shipped_configs_pass_envoy_validate() {
    let files = shipped_configs();
    assert!(
        files.contains(&"envoy/ingress.yaml".to_owned())
            && files.contains(&"envoy/sidecar.yaml".to_owned()),
        "{files:?}"
    );
    for file in files {
        // Only the wasm path changes (made absolute); ports and filter config are as shipped.
        let (ok, out) = EnvoyBuilder::shipped(&file).keep_ports().validate().await;
        assert!(
            ok,
            "{file} fails `envoy --mode validate`:\n{}",
            tail(&out, 40)
        );
        assert!(out.contains("OK"), "{file}: {}", tail(&out, 10));
    }
}

/// What the shipped files promise in their comments and the team notes: the key comes from
/// the environment, only `auth` may signal at the ingress, no fail-open, the fixed addresses.
#[test]
fn shipped_configs_say_what_they_promise() {
    use serde_yaml::Value;
    for (file, listener, clusters, filter_json) in [
        (
            "envoy/ingress.yaml",
            "ingress",
            &[("app", 8080), ("auth", 8081), ("api", 8082)][..],
            serde_json::json!({
                "keys": [{"id": "k1", "secret_env": "SESSION_GUARD_KEY"}],
                "signal": {"trusted_clusters": ["auth"]},
                "exempt": {"paths": ["/healthz", "/static/"]}
            }),
        ),
        (
            "envoy/sidecar.yaml",
            "sidecar",
            &[("app", 8080)][..],
            serde_json::json!({"keys": [{"id": "k1", "secret_env": "SESSION_GUARD_KEY"}]}),
        ),
    ] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let root: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let port = |v: &Value| v["socket_address"]["port_value"].as_u64();
        assert_eq!(port(&root["admin"]["address"]), Some(9901), "{file}");
        let l = &root["static_resources"]["listeners"][0];
        assert_eq!(l["name"].as_str(), Some(listener), "{file}");
        assert_eq!(port(&l["address"]), Some(10000), "{file}");
        let hcm = &l["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(hcm["codec_type"].as_str(), Some("AUTO"), "{file}");
        let filters = hcm["http_filters"].as_sequence().unwrap();
        let names: Vec<_> = filters
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["envoy.filters.http.wasm", "envoy.filters.http.router"],
            "{file}"
        );
        let wasm = &filters[0]["typed_config"];
        assert!(wasm.get("fail_open").is_none(), "{file}: fail_open");
        let plugin = &wasm["config"];
        assert!(
            plugin.get("failure_policy").is_none(),
            "{file}: failure_policy"
        );
        assert_eq!(plugin["root_id"].as_str(), Some("session_guard"));
        let vm = &plugin["vm_config"];
        assert_eq!(vm["runtime"].as_str(), Some("envoy.wasm.runtime.v8"));
        assert_eq!(
            vm["code"]["local"]["filename"].as_str(),
            Some("target/wasm32-wasip1/release/session_guard.wasm")
        );
        assert_eq!(
            vm["environment_variables"]["host_env_keys"][0].as_str(),
            Some("SESSION_GUARD_KEY")
        );
        let json: serde_json::Value =
            serde_json::from_str(plugin["configuration"]["value"].as_str().unwrap()).unwrap();
        assert_eq!(json, filter_json, "{file}");
        let shipped: Vec<(&str, u64)> = root["static_resources"]["clusters"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|c| {
                let ep = &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"];
                (c["name"].as_str().unwrap(), port(&ep["address"]).unwrap())
            })
            .collect();
        assert_eq!(shipped, clusters, "{file}");
    }
}

/// The files exactly as shipped, from the repo root as `make run` uses them: the relative wasm
/// path resolves to the `make build` output, and sidecar-native.yaml finds the `make
/// build-native` output with the search path its header comment gives.
#[tokio::test]
async fn shipped_configs_validate_verbatim_from_the_repo_root() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let wasm = root.join("target/wasm32-wasip1/release/session_guard.wasm");
    assert!(
        wasm.exists(),
        "{} is missing: run `make build`",
        wasm.display()
    );
    for file in shipped_configs() {
        let out = tokio::process::Command::new(envoy_bin())
            .args(["--mode", "validate", "-l", "warning", "-c", &file])
            .current_dir(root)
            .env("SESSION_GUARD_KEY", TEST_KEY)
            .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", "target/release")
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(STARTUP_TIMEOUT, out)
            .await
            .expect("envoy --mode validate timed out")
            .expect("run envoy");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{file}:\n{}", tail(&text, 40));
    }
}

/// `--mode validate` is not only a schema check: it loads the wasm and runs the plugin's
/// `on_configure`, so an operator's `envoy --mode validate` catches a bad filter configuration.
#[tokio::test]
async fn validate_mode_runs_the_filter_configuration_check() {
    let (ok, out) = EnvoyBuilder::shipped("envoy/sidecar.yaml")
        .keep_ports()
        .filter_config(r#"{"keys":[]}"#)
        .validate()
        .await;
    assert!(
        !ok,
        "validate accepted an empty key list:\n{}",
        tail(&out, 20)
    );
    assert_invalid_config_line(&out, "keys");
}

// ---------------------------------------------------------------------------------------------
// (b) smoke

#[tokio::test]
async fn ingress_routes_to_app_auth_and_api() {
    let (app, auth, api) = (
        Upstream::start().await,
        Upstream::start().await,
        Upstream::start().await,
    );
    let envoy = EnvoyBuilder::shipped("envoy/ingress.yaml")
        .upstream("app", &app)
        .upstream("auth", &auth)
        .upstream("api", &api)
        .start()
        .await;

    for (path, up, other) in [
        ("/", &app, [&auth, &api]),
        ("/page/1?q=a%20b&x", &app, [&auth, &api]),
        ("/auth/x", &auth, [&app, &api]),
        ("/api/x?y=1", &api, [&app, &auth]),
    ] {
        let before = [up.count(), other[0].count(), other[1].count()];
        let resp = send(envoy.port(), Req::get(path)).await;
        assert_eq!(resp.status, 200, "GET {path}: {resp:?}");
        assert_eq!(resp.body_str(), "ok", "GET {path}");
        assert_eq!(
            up.count(),
            before[0] + 1,
            "GET {path} did not reach its cluster"
        );
        assert_eq!(
            [other[0].count(), other[1].count()],
            [before[1], before[2]],
            "GET {path} reached another cluster"
        );
        let got = up.last().expect("recorded");
        assert_eq!(got.method, "GET");
        assert_eq!(got.path_str(), path, "GET {path}: path changed on the way");
        assert_eq!(got.version, "HTTP/1.1");
        assert!(
            got.header("x-request-id").is_some(),
            "no x-request-id: {got:?}"
        );
    }
}

#[tokio::test]
async fn ingress_serves_http2_prior_knowledge() {
    let app = Upstream::start().await;
    let envoy = EnvoyBuilder::shipped("envoy/ingress.yaml")
        .upstream("app", &app)
        .start()
        .await;
    let resp = send_h2(envoy.port(), Req::post("/h2/path?a=1", "hello")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body_str(), "ok");
    let got = app.last().expect("recorded");
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, b"/h2/path?a=1");
    assert_eq!(got.body, b"hello");
    assert_eq!(got.version, "HTTP/1.1", "upstreams are plain HTTP/1.1");
}

#[tokio::test]
async fn sidecar_forwards_to_app() {
    let app = Upstream::start().await;
    let envoy = EnvoyBuilder::shipped("envoy/sidecar.yaml")
        .upstream("app", &app)
        .start()
        .await;
    let resp = send(envoy.port(), Req::get("/anything?x=1")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(app.last().expect("recorded").path, b"/anything?x=1");
}

/// Envoy 1.40's HTTP/1 codec refuses bytes 0x80-0xFF in the request-target (400 before any
/// filter runs); its HTTP/2 codec forwards them byte for byte. The upstream records them.
#[tokio::test]
async fn bytes_0x80_0xff_in_the_path_over_http1_get_400_over_http2_reach_the_upstream() {
    let app = Upstream::start().await;
    let envoy = EnvoyBuilder::shipped("envoy/sidecar.yaml")
        .upstream("app", &app)
        .start()
        .await;
    for target in [&b"/a\xff"[..], b"/a\xc3\xa9?q=\x80"] {
        let mut req = b"GET ".to_vec();
        req.extend_from_slice(target);
        req.extend_from_slice(b" HTTP/1.1\r\nhost: x\r\n\r\n");
        let raw = raw_http1(envoy.port(), &req).await;
        assert_eq!(
            raw_status(&raw),
            Some(400),
            "{}",
            String::from_utf8_lossy(&raw)
        );
        assert_eq!(
            app.count(),
            0,
            "Envoy forwarded an HTTP/1 target with 0x80-0xFF"
        );

        let status = raw_h2(envoy.port(), "GET", target, &[("x-t", b"\xfe")]).await;
        assert_eq!(status, Ok(200));
        let got = app.last().expect("forwarded over HTTP/2");
        assert_eq!(got.path, target);
        assert_eq!(got.header_bytes("x-t"), Some(&b"\xfe"[..]));
        app.clear();
    }
}

// ---------------------------------------------------------------------------------------------
// The harness itself (no Envoy): the upstream records what arrives byte for byte.

#[tokio::test]
async fn harness_upstream_records_raw_target_headers_body_and_trailers() {
    let up = Upstream::start().await;
    up.respond_with(|req| {
        Reply::status(201)
            .header("set-cookie", "a=1; Path=/")
            .header("set-cookie", "b=2; Path=/")
            .header("x-echo-len", req.body.len().to_string())
            .body("made")
    });

    // Bytes hyper's `http::Uri` refuses (0xFF, `<`, `` ` ``, `"`) in the request-target, a header
    // value with 0x80-0xFF, two `cookie` lines, and a chunked body with a trailer; then a
    // second request on the same connection.
    let mut req = b"POST /a\xff\xfe<`;jsessionid=1?x=%zz&b=\"<> HTTP/1.1\r\nhost: h\r\n".to_vec();
    req.extend_from_slice(b"cookie: a=1\r\nx-raw: caf\xe9\r\ncookie: b=2\r\n");
    req.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
    req.extend_from_slice(b"5\r\nhello\r\n0\r\nx-trailer: t1\r\n\r\n");
    let raw = raw_http1(up.port(), &req).await;
    assert_eq!(
        raw_status(&raw),
        Some(201),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert_eq!(text.matches("set-cookie:").count(), 2, "{text}");

    let got = up.last().expect("recorded");
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, b"/a\xff\xfe<`;jsessionid=1?x=%zz&b=\"<>");
    let names: Vec<&str> = got.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["host", "cookie", "x-raw", "cookie", "transfer-encoding"]
    );
    assert_eq!(got.header_all("cookie"), ["a=1", "b=2"]);
    assert_eq!(got.header_bytes("x-raw"), Some(&b"caf\xe9"[..]));
    assert_eq!(got.body, b"hello");
    assert_eq!(got.trailers, [("x-trailer".to_owned(), b"t1".to_vec())]);

    // The same upstream through the hyper client, twice on fresh connections.
    let resp = send(
        up.port(),
        Req::get("/b;jsessionid=2?x=%zz&b").header("cookie", "c=3"),
    )
    .await;
    assert_eq!(resp.status, 201);
    assert_eq!(
        resp.header_all("set-cookie"),
        ["a=1; Path=/", "b=2; Path=/"]
    );
    assert_eq!(set_cookie_value(&resp, "b").as_deref(), Some("2"));
    let got = up.last().expect("recorded");
    assert_eq!(got.path, b"/b;jsessionid=2?x=%zz&b");
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn harness_upstream_records_every_request_on_a_kept_alive_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start().await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", up.port()))
        .await
        .expect("connect");
    // Each request only after the previous answer, as Envoy does (it never pipelines).
    let targets: [&[u8]; 3] = [b"/one", b"/two\xc3\xa9", b"/three\x80"];
    for (i, target) in targets.into_iter().enumerate() {
        let mut r = b"GET ".to_vec();
        r.extend_from_slice(target);
        r.extend_from_slice(b" HTTP/1.1\r\nhost: h\r\ncontent-length: 1\r\n\r\nx");
        stream.write_all(&r).await.expect("write");
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).await.expect("read");
        assert_eq!(raw_status(&buf[..n]), Some(200), "request {i}");
        let got = up.last().expect("recorded");
        assert_eq!(got.path, target, "request {i}");
        assert_eq!(got.body, b"x", "request {i}");
    }
    assert_eq!(up.count(), 3);
}

#[tokio::test]
async fn harness_raw_h2_reads_any_status() {
    let app = Upstream::start().await;
    app.respond_with(|req| {
        let code = req
            .path_str()
            .trim_start_matches('/')
            .parse()
            .unwrap_or(500);
        Reply::status(code)
    });
    let envoy = EnvoyBuilder::shipped("envoy/sidecar.yaml")
        .upstream("app", &app)
        .start()
        .await;
    for code in [200u16, 204, 302, 400, 404, 418, 500, 599] {
        let path = format!("/{code}");
        let got = raw_h2(envoy.port(), "GET", path.as_bytes(), &[]).await;
        assert_eq!(got, Ok(code), "{path}");
    }
}

// ---------------------------------------------------------------------------------------------
// (c) refused configurations: Envoy must not serve, and must say which field is wrong.

/// Asserts that some line of `log` is the filter's configuration error naming `field`.
fn assert_invalid_config_line(log: &str, field: &str) {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("session_guard: invalid configuration:"))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains(field)),
        "expected a line `session_guard: invalid configuration: ...` naming {field:?}; \
         such lines: {lines:#?}; log tail:\n{}",
        tail(log, 30)
    );
}

/// Starts the sidecar config with `filter_config` and asserts the refusal.
async fn assert_refused(builder: EnvoyBuilder, field: &str, secrets: &[&str]) {
    let (code, log) = builder.start_expect_failure().await;
    assert!(
        matches!(code, Some(c) if c != 0),
        "Envoy should exit with an error code, got {code:?}"
    );
    assert_invalid_config_line(&log, field);
    for secret in [TEST_KEY].iter().chain(secrets) {
        assert!(!log.contains(secret), "the log shows a secret ({secret})");
    }
}

fn sidecar(filter_config: &str) -> EnvoyBuilder {
    EnvoyBuilder::shipped("envoy/sidecar.yaml").filter_config(filter_config)
}

const GOOD_KEY: &str = r#"{"id":"k1","secret_env":"SESSION_GUARD_KEY"}"#;

#[tokio::test]
async fn refuses_unknown_field() {
    let config = format!(r#"{{"keys":[{GOOD_KEY}],"mdoe":"monitor"}}"#);
    assert_refused(sidecar(&config), "mdoe", &[]).await;
}

#[tokio::test]
async fn refuses_unknown_nested_field() {
    let config = format!(r#"{{"keys":[{GOOD_KEY}],"cookie":{{"nmae":"sid"}}}}"#);
    assert_refused(sidecar(&config), "nmae", &[]).await;
}

#[tokio::test]
async fn refuses_empty_key_list() {
    assert_refused(sidecar(r#"{"keys":[]}"#), "keys", &[]).await;
}

#[tokio::test]
async fn refuses_missing_keys() {
    assert_refused(sidecar(r#"{}"#), "keys", &[]).await;
}

#[tokio::test]
async fn refuses_key_shorter_than_32_bytes() {
    // base64 of the 16 bytes `sixteen-byte-key`.
    let short = "c2l4dGVlbi1ieXRlLWtleQ==";
    let config = format!(r#"{{"keys":[{{"id":"k1","secret":"{short}"}}]}}"#);
    assert_refused(
        sidecar(&config),
        "keys[0].secret",
        &[short, "sixteen-byte-key"],
    )
    .await;
}

#[tokio::test]
async fn refuses_secret_env_naming_an_unset_variable() {
    let config = format!(r#"{{"keys":[{GOOD_KEY}]}}"#);
    assert_refused(
        sidecar(&config).env_remove("SESSION_GUARD_KEY"),
        "keys[0].secret_env",
        &[],
    )
    .await;
}

#[tokio::test]
async fn refuses_duplicate_key_id() {
    let other = "b3RoZXItc2Vzc2lvbi1ndWFyZC1rZXktMDEyMzQ1Njc4OQ==";
    let config = format!(r#"{{"keys":[{GOOD_KEY},{{"id":"k1","secret":"{other}"}}]}}"#);
    assert_refused(sidecar(&config), "keys[1].id", &[other]).await;
}

#[tokio::test]
async fn refuses_unknown_same_site() {
    let config = format!(r#"{{"keys":[{GOOD_KEY}],"cookie":{{"same_site":"Sideways"}}}}"#);
    assert_refused(sidecar(&config), "cookie.same_site", &[]).await;
}

#[tokio::test]
async fn refuses_same_site_none_without_secure() {
    let config = format!(
        r#"{{"keys":[{GOOD_KEY}],"cookie":{{"name":"sg","secure":false,"same_site":"None"}}}}"#
    );
    assert_refused(sidecar(&config), "cookie.same_site", &[]).await;
}

#[tokio::test]
async fn refuses_a_revoked_session_that_is_not_a_session_hash() {
    let config = format!(
        r#"{{"keys":[{GOOD_KEY}],"revoke":{{"sessions":["0011223344556677","00112233"]}}}}"#
    );
    assert_refused(sidecar(&config), "revoke.sessions[1]", &[]).await;
}

#[tokio::test]
async fn refuses_more_than_10000_revoked_sessions() {
    let list: Vec<String> = (0..10_001).map(|i| format!("\"{i:016x}\"")).collect();
    let config = format!(
        r#"{{"keys":[{GOOD_KEY}],"revoke":{{"sessions":[{}]}}}}"#,
        list.join(",")
    );
    assert_refused(
        sidecar(&config),
        "revoke.sessions: has 10001 entries; at most 10000",
        &[],
    )
    .await;
}

#[tokio::test]
async fn refuses_unknown_client_change_detection() {
    let config = format!(r#"{{"keys":[{GOOD_KEY}],"detect":{{"client_change":"block"}}}}"#);
    assert_refused(sidecar(&config), "detect.client_change", &[]).await;
}

#[tokio::test]
async fn refuses_an_app_cookie_named_like_the_mesh_cookie() {
    let config = format!(
        r#"{{"keys":[{GOOD_KEY}],"cookie":{{"name":"mesh_sid"}},"app_cookies":{{"extra_names":["MESH_SID"]}}}}"#
    );
    assert_refused(sidecar(&config), "app_cookies.extra_names[0]", &[]).await;
}

#[tokio::test]
async fn refuses_a_cookie_scope_with_spaces() {
    let config = format!(r#"{{"keys":[{GOOD_KEY}],"cookie":{{"scope":"shop example"}}}}"#);
    assert_refused(sidecar(&config), "cookie.scope", &[]).await;
}
