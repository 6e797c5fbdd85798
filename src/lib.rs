//! session-guard: a Proxy-Wasm filter that ends session fixation at the mesh.
//!
//! `filter` is the only module that talks to the host; everything else is pure logic,
//! unit-tested natively.

pub mod config;
pub mod cookies;
pub mod metrics;
pub mod policy;
pub mod set_cookie;
pub mod token;
pub mod url;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod filter;
#[cfg(target_arch = "wasm32")]
mod host;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    filter::start();
}}
