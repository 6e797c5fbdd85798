//! The seam between the filter and its host: everything the filter asks of Envoy.
//! `crates/wasm/src/host.rs` implements it on the Proxy-Wasm ABI; [`fake::FakeHost`] in memory, so that
//! the filter's logic runs and is tested natively. The filter is generic over `H: Host`
//! (static dispatch: one implementation in the wasm, no vtables).

use crate::wire::HeaderMap;
use std::fmt;

/// Which header map a call concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Map {
    Request,
    Response,
    RequestTrailers,
    ResponseTrailers,
}

/// A host call that did not succeed; the caller counts it and carries on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

pub trait Host {
    /// Every header of the map, in order (names lowercase, values raw bytes).
    fn header_map(&self, map: Map) -> Result<HeaderMap, HostError>;
    fn replace_header(&self, map: Map, name: &str, value: &[u8]) -> Result<(), HostError>;
    fn add_header(&self, map: Map, name: &str, value: &[u8]) -> Result<(), HostError>;
    fn remove_header(&self, map: Map, name: &str) -> Result<(), HostError>;
    /// A property such as `["xds", "cluster_name"]`; `None` when absent or on any error.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Sets a property (Envoy: filter state `wasm.<path>`, read by access logs and traces).
    fn set_property(&self, path: &str, value: &[u8]) -> Result<(), HostError>;
    /// The filter's configuration bytes (empty when none was given).
    fn plugin_configuration(&self) -> Result<Vec<u8>, HostError>;
    /// Seconds since the Unix epoch; 0 if the clock is unavailable.
    fn now_s(&self) -> u64;
    /// Fills `buf` from a CSPRNG; `false` when randomness is unavailable.
    fn random_bytes(&self, buf: &mut [u8]) -> bool;
    /// Answers the request locally; `false` if the host refused.
    fn send_local_response(&self, status: u32, headers: &[(&str, String)], body: &[u8]) -> bool;
    /// Proxy-Wasm shared data (one store per Envoy process and VM id, shared by every worker,
    /// kept across configuration pushes): the value and its CAS token; `None` when the key is
    /// absent or on any error.
    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Sets `key` if its CAS token is still `cas` (0: whatever it is); `Err` on a CAS mismatch
    /// (another worker wrote first) or any other failure.
    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError>;
    fn define_counter(&self, name: &str) -> Option<u32>;
    fn increment_counter(&self, id: u32, by: i64) -> Result<(), HostError>;
    /// Whether a line at `level` would be printed (lines that would not are never built).
    fn log_enabled(&self, level: LogLevel) -> bool;
    fn log(&self, level: LogLevel, msg: fmt::Arguments<'_>);
}

#[cfg(test)]
pub mod fake;
