//! The session-guard Proxy-Wasm module. Everything is in `session_guard_wasm` (the glue, its
//! `proxy_wasm::main!` and the SDK's exported callbacks) and the core it links; this crate
//! only links them into a cdylib, at its own opt-level (see Cargo.toml).

extern crate session_guard_wasm;
