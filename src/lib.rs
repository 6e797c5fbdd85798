//! session-guard: a Proxy-Wasm filter that ends session fixation at the mesh.
//!
//! The pure core, with no host dependency: `policy` decides (pure functions of headers);
//! `filter` reads and writes headers through the `hostapi::Host` trait and runs in tests
//! against an in-memory host. One glue crate per host implements `Host` and forwards the
//! host's callbacks: `crates/wasm` (Proxy-Wasm) and `crates/native` (Envoy dynamic module).

pub use session_guard_config as config;
pub mod cookies;
pub mod dbsc;
pub mod filter;
pub mod hostapi;
pub mod metrics;
pub mod policy;
pub mod set_cookie;
pub mod token;
pub mod url;
pub mod wire;
