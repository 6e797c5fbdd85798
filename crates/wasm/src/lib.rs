//! The session-guard Proxy-Wasm module: the thin glue between the Proxy-Wasm ABI and the
//! `session_guard` core. `glue` holds the Proxy-Wasm contexts, `host` the ABI calls (the
//! only `unsafe` of the Wasm build). Linked into the .wasm by the empty cdylib
//! `crates/wasm/module` (see both Cargo.toml files for the opt-levels).

#[cfg(target_arch = "wasm32")]
mod glue;
#[cfg(target_arch = "wasm32")]
mod host;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    glue::start();
}}
