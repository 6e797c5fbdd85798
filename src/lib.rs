//! session-guard: a Proxy-Wasm filter that ends session fixation at the mesh.
//!
//! `policy` decides (pure functions of headers); `filter` reads and writes headers through
//! the `hostapi::Host` trait and runs natively in tests against an in-memory host. Only
//! `glue` (the Proxy-Wasm contexts) and `host` (the ABI calls) are wasm-only. One crate on
//! purpose: the seam is a trait, not a crate boundary.

pub use session_guard_config as config;
pub mod cookies;
pub mod filter;
pub mod hostapi;
pub mod metrics;
pub mod policy;
pub mod set_cookie;
pub mod token;
pub mod url;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod glue;
#[cfg(target_arch = "wasm32")]
mod host;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    glue::start();
}}
