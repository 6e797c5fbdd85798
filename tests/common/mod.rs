//! End-to-end harness: a real Envoy running the shipped configuration with the built filter,
//! recording upstreams and byte-exact clients. Every e2e test file uses it with `mod common;`.
//!
//! ```ignore
//! let app = Upstream::start().await;
//! let envoy = EnvoyBuilder::shipped("envoy/sidecar.yaml").upstream("app", &app).start().await;
//! let resp = send(envoy.port(), Req::get("/a;jsessionid=1?x=%zz&b")).await;
//! assert_eq!(app.last().expect("forwarded").path, b"/a?x=%zz&b");
//! ```
//!
//! - [`Upstream`]: an HTTP/1.1 server (hyper) on a free port that records every request byte for
//!   byte (request-target, headers in wire order with duplicates, body, trailers) and answers
//!   with a scripted [`Reply`].
//! - [`EnvoyBuilder`]: takes a shipped config (`envoy/*.yaml`), substitutes ports, the wasm path,
//!   and optionally the filter's configuration *structurally* (parsed YAML, never text
//!   replacement), writes it into a fresh temp dir and starts Envoy. [`Envoy`] kills the
//!   process and removes the dir on drop, also when the test panics (and then prints the log
//!   tail, so a failing test shows what Envoy said).
//! - [`send`] / [`send_h2`]: one request on a fresh HTTP/1.1 or h2c connection (hyper's client
//!   connection API, so the request-target goes out exactly as given). [`raw_http1`] and
//!   [`raw_h2`] for request-targets that `http::Uri` refuses (bytes 0x80-0xFF: Envoy answers
//!   400 to them over HTTP/1.1 and forwards them over HTTP/2).
//!
//! Rooms: [`upstream`], [`client`], [`h2_raw`], [`cookies`], [`envoy`] (the builder),
//! [`process`] (the running Envoy), [`mesh`] (the shipped ingress with its three upstreams, a
//! fixture shared by several test files) and [`istio`] (istiod / istio-agent emulation, used
//! by the Istio tests through `common::istio::*`). Every public item of the first seven is
//! re-exported here, so `use common::*;` reaches it by its name. [`dbsc`] (a scripted DBSC
//! client with its own device key, and the DBSC site fixture) is reached as `common::dbsc::*`.
//!
//! Environment: `ENVOY_BIN` (default `<repo>/.venv/bin/envoy`) and `SESSION_GUARD_WASM`
//! (default `<repo>/target/wasm32-wasip1/release/session_guard.wasm`); the Makefile exports both.
//! Everything binds port 0 and uses its own temp dir, so tests in one binary run in parallel.
// Helpers of integration tests are not #[test] functions, so clippy.toml's allow-*-in-tests do
// not cover them (rust-clippy#13981): here a failed expectation panics, like in a test.
#![allow(
    dead_code, // each test binary uses a different part of the harness,
    unused_imports, // and so of the re-exports below
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

/// The header and body accessors of a message a test saw (`headers: Headers`, `body:
/// Vec<u8>`): requests the upstream recorded, responses the client received. Uses `find_all`
/// and `lossy`, which the invoking module imports.
macro_rules! message_accessors {
    () => {
        /// The first value of `name` as text (lossy), if present.
        pub fn header(&self, name: &str) -> Option<String> {
            self.header_bytes(name).map(lossy)
        }
        /// The first value of `name`, exact bytes.
        pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
            find_all(&self.headers, name).next()
        }
        /// Every value of `name`, in order (lossy text).
        pub fn header_all(&self, name: &str) -> Vec<String> {
            find_all(&self.headers, name).map(lossy).collect()
        }
        pub fn body_str(&self) -> String {
            lossy(&self.body)
        }
    };
}

pub mod access_log;
pub mod apps;
pub mod client;
pub mod cookies;
pub mod dbsc;
pub mod envoy;
pub mod h2_raw;
pub mod istio;
pub mod mesh;
pub mod process;
pub mod upstream;
pub mod varnish;

pub use apps::*;
pub use client::*;
pub use cookies::*;
pub use envoy::*;
pub use h2_raw::*;
pub use mesh::*;
pub use process::*;
pub use upstream::*;
pub use varnish::*;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::header::{HeaderName, HeaderValue};
use hyper::HeaderMap;
use serde_yaml::Value;

/// Base64 of the 32 bytes `session-guard-test-key-012345678`: the `SESSION_GUARD_KEY` every
/// Envoy gets unless the test sets another with [`EnvoyBuilder::env`].
pub const TEST_KEY: &str = "c2Vzc2lvbi1ndWFyZC10ZXN0LWtleS0wMTIzNDU2Nzg=";

/// How long Envoy may take to become ready, or to exit on a refused configuration.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one request (connect, send, full response) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval between polls while waiting for Envoy.
const POLL: Duration = Duration::from_millis(25);

// ---------------------------------------------------------------------------------------------
// Headers

/// Headers as (lowercase name, raw value bytes), in order, duplicates kept.
pub type Headers = Vec<(String, Vec<u8>)>;

fn find_all<'a>(headers: &'a Headers, name: &str) -> impl Iterator<Item = &'a [u8]> + 'a {
    let name = name.to_ascii_lowercase();
    headers
        .iter()
        .filter(move |(n, _)| *n == name)
        .map(|(_, v)| v.as_slice())
}

pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn header_map_to_vec(map: &HeaderMap) -> Headers {
    map.iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

fn try_header(name: &str, value: &[u8]) -> Result<(HeaderName, HeaderValue), String> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|e| format!("invalid header name {name:?}: {e}"))?;
    let v = HeaderValue::from_bytes(value)
        .map_err(|e| format!("invalid value for header {name}: {:?}: {e}", lossy(value)))?;
    Ok((n, v))
}

fn to_header(name: &str, value: &[u8]) -> (HeaderName, HeaderValue) {
    try_header(name, value).unwrap_or_else(|e| panic!("{e}"))
}

async fn within<F: Future>(limit: Duration, f: F) -> Result<F::Output, String> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| format!("no answer within {limit:?}"))
}

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh directory under the system temp dir, unique across threads and processes.
fn unique_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "session-guard-{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

fn seq_mut<'a>(v: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    v.get_mut(key)
        .and_then(Value::as_sequence_mut)
        .into_iter()
        .flatten()
}
