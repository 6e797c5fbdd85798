//! Micro-benchmarks of the pure core: the per-request work outside host calls.
//! `cargo bench --bench core`; the Envoy-level benchmark is `make bench`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use session_guard::config::{parse, DEFAULT_URL_PARAMS};
use session_guard::cookies;
use session_guard::token::{self, Session, SessionId};
use session_guard::url;

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

criterion_group!(benches, bench);
criterion_main!(benches);
