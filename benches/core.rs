//! Micro-benchmarks of the pure core: the per-request work outside host calls.
//! `cargo bench --bench core` (`-- class` for the filter per `make bench` class); the
//! Envoy-level benchmark is `make bench`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use session_guard::config::{parse, DEFAULT_URL_PARAMS};
use session_guard::cookies;
use session_guard::filter::Root;
use session_guard::hostapi::{Host, HostError, LogLevel, Map};
use session_guard::token::{self, Session, SessionId};
use session_guard::url;
use session_guard::wire::{Header, HeaderMap};
use std::cell::{Cell, RefCell};

fn bench(c: &mut Criterion) {
    let cfg = parse(
        br#"{"keys":[{"id":"k1","secret":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}]}"#,
        &|_| None,
    )
    .unwrap();
    let key = &cfg.keys[0];
    let s = Session::new(
        SessionId([7; 16]),
        1_800_000_000,
        Some("alice@example.com".into()),
    );
    let value = token::encode(&s, "__Host-session", key).unwrap();
    c.bench_function("verify", |b| {
        b.iter(|| token::decode(black_box(value.as_bytes()), b"__Host-session", &cfg.keys))
    });
    c.bench_function("mint", |b| {
        b.iter(|| token::encode(black_box(&s), "__Host-session", key))
    });
    let params: Vec<String> = DEFAULT_URL_PARAMS.iter().map(|s| s.to_string()).collect();
    let clean = b"/shop/cart/items?item=3&qty=1&utm_source=newsletter&ref=home";
    let dirty = b"/shop/cart;jsessionid=ABCDEF0123/items?item=3&JSESSIONID=ABCDEF0123&qty=1";
    c.bench_function("url strip (clean)", |b| {
        b.iter(|| url::strip_path(black_box(clean), &params))
    });
    c.bench_function("url strip (two params)", |b| {
        b.iter(|| url::strip_path(black_box(dirty), &params))
    });
    let header = format!("_ga=GA1.2.3.4; theme=dark; __Host-session={value}; lang=en");
    c.bench_function("cookie header parse", |b| {
        b.iter(|| cookies::find(&[black_box(header.as_bytes())], b"__Host-session"))
    });
    c.bench_function("cookie header rewrite", |b| {
        b.iter(|| cookies::without_mesh_cookie(black_box(header.as_bytes()), b"__Host-session"))
    });
}

/// A host for the filter with no Envoy behind it: header maps in memory, writes recorded
/// only where a class needs them (the minted cookie). What the filter costs here is its own
/// computation per request, the part `make bench` cannot separate from host calls.
#[derive(Default)]
struct BenchHost {
    /// Wire bytes, as the host delivers them (the filter reads them in place).
    request: HeaderMap,
    response: HeaderMap,
    cluster: &'static [u8],
    config: Vec<u8>,
    set_cookies: RefCell<Vec<Vec<u8>>>,
    draws: Cell<u8>,
}

impl Host for BenchHost {
    fn header_map(&self, map: Map) -> Result<HeaderMap, HostError> {
        Ok(match map {
            Map::Request => self.request.clone(),
            Map::Response => self.response.clone(),
            Map::RequestTrailers | Map::ResponseTrailers => HeaderMap::default(),
        })
    }
    fn replace_header(&self, _: Map, _: &str, _: &[u8]) -> Result<(), HostError> {
        Ok(())
    }
    fn add_header(&self, map: Map, name: &str, value: &[u8]) -> Result<(), HostError> {
        if map == Map::Response && name == "set-cookie" {
            self.set_cookies.borrow_mut().push(value.to_vec());
        }
        Ok(())
    }
    fn remove_header(&self, _: Map, _: &str) -> Result<(), HostError> {
        Ok(())
    }
    fn property(&self, _: &[&str]) -> Option<Vec<u8>> {
        Some(self.cluster.to_vec())
    }
    fn set_property(&self, _: &str, _: &[u8]) -> Result<(), HostError> {
        Ok(())
    }
    fn plugin_configuration(&self) -> Result<Vec<u8>, HostError> {
        Ok(self.config.clone())
    }
    fn now_s(&self) -> u64 {
        1_800_000_000
    }
    fn random_bytes(&self, buf: &mut [u8]) -> bool {
        self.draws.set(self.draws.get().wrapping_add(1));
        buf.fill(self.draws.get());
        true
    }
    fn send_local_response(&self, _: u32, _: &[(&str, String)], _: &[u8]) -> bool {
        true
    }
    /// The logout denylist's worst case for a valid session: its bucket full of other
    /// sessions (16 entries, 256 bytes copied and scanned).
    fn shared_get(&self, _: &str) -> Option<(Vec<u8>, u32)> {
        let mut bucket = Vec::with_capacity(256);
        for n in 0..16u8 {
            bucket.extend_from_slice(&[0xee, n, 0, 0, 0, 0, 0, 0]);
            bucket.extend_from_slice(&u64::MAX.to_be_bytes());
        }
        Some((bucket, 1))
    }
    fn shared_set(&self, _: &str, _: &[u8], _: u32) -> Result<(), HostError> {
        Ok(())
    }
    fn define_counter(&self, _: &str) -> Option<u32> {
        Some(1)
    }
    fn increment_counter(&self, _: u32, _: i64) -> Result<(), HostError> {
        Ok(())
    }
    fn log_enabled(&self, level: LogLevel) -> bool {
        level >= LogLevel::Info
    }
    fn log(&self, _: LogLevel, _: std::fmt::Arguments<'_>) {}
}

const CONFIG: &str = r#"{"keys":[{"id":"k1","secret":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}],"signal":{"trusted_clusters":["auth"]}"#;

fn headers(list: &[(&str, &str)]) -> HeaderMap {
    let owned: Vec<Header> = list
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect();
    HeaderMap::from_headers(&owned)
}

fn request(path: &str, cookie: Option<&str>) -> HeaderMap {
    let mut h = vec![
        (":method", "GET"),
        (":path", path),
        (":authority", "shop.example.com"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) bench"),
        ("x-request-id", "0f5b3a4e-1111-2222-3333-444455556666"),
    ];
    if let Some(c) = cookie {
        h.push(("cookie", c));
    }
    headers(&h)
}

fn configured(host: &BenchHost) -> Root {
    let mut root = Root::default();
    assert!(root.configure(host, &|_| None));
    root
}

/// One request/response through the filter; the `name=value` of the mesh cookie it set, if any.
fn exchange(root: &Root, host: &BenchHost) -> Option<String> {
    host.set_cookies.borrow_mut().clear();
    let mut s = root.stream();
    s.on_request_headers(host);
    s.on_response_headers(host);
    let set = host.set_cookies.borrow();
    set.iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .find(|v| v.starts_with("__Host-session="))
        .map(|v| v.split(';').next().unwrap_or_default().to_string())
}

fn revoke_config() -> String {
    let sessions: Vec<String> = (0..10_000u64)
        .map(|i| format!("\"{:016x}\"", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        .collect();
    let subjects: Vec<String> = (0..10_000)
        .map(|i| format!("\"user{i}@example.com\":{}", 1_700_000_000 + i))
        .collect();
    format!(
        r#"{},"revoke":{{"sessions":[{}],"subjects":{{{}}}}}}}"#,
        CONFIG,
        sessions.join(","),
        subjects.join(",")
    )
}

/// The `make bench` classes through the whole filter (views, policy, edits) on `BenchHost`.
fn classes(c: &mut Criterion) {
    let ok = headers(&[(":status", "200"), ("content-type", "text/html")]);
    let mut host = BenchHost {
        config: format!("{CONFIG}}}").into_bytes(),
        cluster: b"app",
        response: ok.clone(),
        request: request("/app/page?x=1", None),
        ..BenchHost::default()
    };
    let root = configured(&host);
    let cookie = exchange(&root, &host).expect("anonymous request mints");
    c.bench_function("class anonymous", |b| b.iter(|| exchange(&root, &host)));
    host.request = request("/app/page?x=1", Some(&cookie));
    c.bench_function("class steady", |b| b.iter(|| exchange(&root, &host)));
    host.request = request("/?jsessionid=ABC&x=1", Some(&cookie));
    c.bench_function("class url", |b| b.iter(|| exchange(&root, &host)));

    // binding: the upstream sets connect.sid once; the re-issued mesh cookie carries the binding.
    host.request = request("/app/bind", Some(&cookie));
    host.response = headers(&[
        (":status", "200"),
        ("set-cookie", "connect.sid=s.bench; Path=/"),
    ]);
    let bound = exchange(&root, &host).expect("binding re-issues the mesh cookie");
    host.response = ok.clone();
    host.request = request(
        "/app/page?x=1",
        Some(&format!("{bound}; connect.sid=s.bench")),
    );
    c.bench_function("class binding", |b| b.iter(|| exchange(&root, &host)));

    host.cluster = b"auth";
    host.request = request("/auth/login", Some(&cookie));
    host.response = headers(&[
        (":status", "200"),
        ("x-session-guard", "login"),
        ("x-session-guard-subject", "alice"),
    ]);
    c.bench_function("class login", |b| b.iter(|| exchange(&root, &host)));

    let revoking = BenchHost {
        config: revoke_config().into_bytes(),
        cluster: b"app",
        response: ok,
        request: request("/app/page?x=1", Some(&cookie)),
        ..BenchHost::default()
    };
    let root = configured(&revoking);
    c.bench_function("class revoke10k", |b| b.iter(|| exchange(&root, &revoking)));
}

criterion_group!(benches, bench, classes);
criterion_main!(benches);
