//! The session-guard Proxy-Wasm module: the thin glue between the Proxy-Wasm ABI and the
//! `session_guard` core. `glue` holds the Proxy-Wasm contexts, `host` the ABI calls (the
//! only `unsafe` of the Wasm build). The crate is compiled for size (see Cargo.toml); the
//! core it links is compiled for speed.

#[cfg(target_arch = "wasm32")]
mod glue;
#[cfg(target_arch = "wasm32")]
mod host;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    glue::start();
}}
