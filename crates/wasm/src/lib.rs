//! The session-guard Proxy-Wasm module. Everything is in the `session_guard` crate (its
//! `proxy_wasm::main!` and the SDK's exported callbacks); this crate only links it into a
//! cdylib, at its own opt-level (see Cargo.toml).

extern crate session_guard;
