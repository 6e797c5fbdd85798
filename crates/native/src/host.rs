//! [`Host`] over Envoy's dynamic-module ABI. Two hosts, because the ABI splits what the
//! Proxy-Wasm host offers in one place: [`ConfigHost`] while Envoy loads the filter
//! configuration (the configuration bytes, counter definitions), [`StreamHost`] during a
//! request (headers, filter state, counters, local replies, the routed cluster). A call the
//! phase does not offer fails like a refused host call, and the core counts it.
//!
//! Time and randomness come from the process (`SystemTime`, `getrandom`), not from Envoy.

use crate::abi::{self, Buffer, Header};
use session_guard::hostapi::{Host, HostError, LogLevel, Map};
use session_guard::metrics::Counter;
use session_guard::wire::HeaderMap;
use std::cell::Cell;
use std::ffi::c_void;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

fn level(level: LogLevel) -> abi::Level {
    match level {
        LogLevel::Debug => abi::LOG_DEBUG,
        LogLevel::Info => abi::LOG_INFO,
        LogLevel::Warn => abi::LOG_WARN,
        LogLevel::Error => abi::LOG_ERROR,
    }
}

pub fn log_enabled(l: LogLevel) -> bool {
    // SAFETY: a plain value call.
    unsafe { abi::envoy_dynamic_module_callback_log_enabled(level(l)) }
}

pub fn log(l: LogLevel, msg: fmt::Arguments<'_>) {
    if !log_enabled(l) {
        return;
    }
    let text = msg.to_string();
    // SAFETY: `text` outlives the call; Envoy copies the message.
    unsafe { abi::envoy_dynamic_module_callback_log(level(l), Buffer::of(text.as_bytes())) }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The host while Envoy loads the configuration (`on_http_filter_config_new`).
pub struct ConfigHost<'a> {
    pub envoy: abi::ConfigEnvoyPtr,
    pub config: &'a [u8],
    /// The `internal_error` counter's id, recorded as the core defines its counters: the
    /// glue counts the one failure the core cannot (a panic).
    pub internal_error: Cell<Option<usize>>,
}

impl Host for ConfigHost<'_> {
    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        shared::get(key)
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
        shared::set(key, value, cas)
    }
    fn header_map(&self, _: Map) -> Result<HeaderMap, HostError> {
        Err(HostError)
    }
    fn replace_header(&self, _: Map, _: &str, _: &[u8]) -> Result<(), HostError> {
        Err(HostError)
    }
    fn add_header(&self, _: Map, _: &str, _: &[u8]) -> Result<(), HostError> {
        Err(HostError)
    }
    fn remove_header(&self, _: Map, _: &str) -> Result<(), HostError> {
        Err(HostError)
    }
    fn property(&self, _: &[&str]) -> Option<Vec<u8>> {
        None
    }
    fn set_property(&self, _: &str, _: &[u8]) -> Result<(), HostError> {
        Err(HostError)
    }
    fn plugin_configuration(&self) -> Result<Vec<u8>, HostError> {
        Ok(self.config.to_vec())
    }
    fn now_s(&self) -> u64 {
        now_s()
    }
    fn random_bytes(&self, buf: &mut [u8]) -> bool {
        getrandom::getrandom(buf).is_ok()
    }
    fn send_local_response(&self, _: u32, _: &[(&str, String)], _: &[u8]) -> bool {
        false
    }
    fn define_counter(&self, name: &str) -> Option<u32> {
        let mut id = 0usize;
        // SAFETY: `name` and `id` outlive the call; no labels.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_define_counter(
                self.envoy,
                Buffer::of(name.as_bytes()),
                std::ptr::null_mut(),
                0,
                &mut id,
            )
        };
        if result != abi::METRICS_SUCCESS {
            return None;
        }
        if name == Counter::InternalError.name() {
            self.internal_error.set(Some(id));
        }
        u32::try_from(id).ok()
    }
    fn increment_counter(&self, _: u32, _: i64) -> Result<(), HostError> {
        Err(HostError)
    }
    fn log_enabled(&self, l: LogLevel) -> bool {
        log_enabled(l)
    }
    fn log(&self, l: LogLevel, msg: fmt::Arguments<'_>) {
        log(l, msg)
    }
}

/// The host during one request: Envoy's `DynamicModuleHttpFilter`, valid for the callback.
pub struct StreamHost {
    pub envoy: abi::FilterEnvoyPtr,
}

fn header_type(map: Map) -> abi::HeaderType {
    match map {
        Map::Request => abi::REQUEST_HEADER,
        Map::Response => abi::RESPONSE_HEADER,
        Map::RequestTrailers => abi::REQUEST_TRAILER,
        Map::ResponseTrailers => abi::RESPONSE_TRAILER,
    }
}

fn ok(done: bool) -> Result<(), HostError> {
    if done {
        Ok(())
    } else {
        Err(HostError)
    }
}

impl StreamHost {
    pub fn new(envoy: *mut c_void) -> Self {
        StreamHost { envoy }
    }

    /// Adds `by` to a counter defined at configuration time.
    pub fn increment(&self, id: usize, by: u64) -> Result<(), HostError> {
        // SAFETY: no labels; the filter pointer is valid during the callback.
        let r = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_increment_counter(
                self.envoy,
                id,
                std::ptr::null_mut(),
                0,
                by,
            )
        };
        ok(r == abi::METRICS_SUCCESS)
    }

    fn set(&self, map: Map, name: &str, value: Buffer) -> Result<(), HostError> {
        // SAFETY: the buffers outlive the call; Envoy copies them.
        let done = unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.envoy,
                header_type(map),
                Buffer::of(name.as_bytes()),
                value,
            )
        };
        self.edited(map, done)
    }

    /// After a request header edit, Envoy routes the request again: a stripped `:path`
    /// (`/auth;jsessionid=x/login` -> `/auth/login`) goes where its clean form is routed, and
    /// the routed cluster read for `signal.trusted_clusters` is the new route's. The Wasm host
    /// does this on every request header edit; the dynamic-module ABI leaves it to the module.
    fn edited(&self, map: Map, done: bool) -> Result<(), HostError> {
        if done && map == Map::Request {
            // SAFETY: the filter pointer is valid during the callback.
            unsafe { abi::envoy_dynamic_module_callback_http_clear_route_cache(self.envoy) }
        }
        ok(done)
    }
}

impl Host for StreamHost {
    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        shared::get(key)
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
        shared::set(key, value, cas)
    }
    fn header_map(&self, map: Map) -> Result<HeaderMap, HostError> {
        let t = header_type(map);
        // SAFETY: the filter pointer is valid during the callback.
        let n = unsafe { abi::envoy_dynamic_module_callback_http_get_headers_size(self.envoy, t) };
        let mut raw = vec![Header::NULL; n];
        // SAFETY: `raw` has room for the `n` headers Envoy just counted; nothing changes the
        // map between the two calls (same thread, same callback).
        if !unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers(self.envoy, t, raw.as_mut_ptr())
        } {
            return Err(HostError);
        }
        // SAFETY: Envoy's buffers stay valid until the map is modified, after this copy.
        let pairs: Vec<(&str, &[u8])> = raw
            .iter()
            .filter_map(|h| {
                let (k, v) = unsafe { (h.key.bytes(), h.value.bytes()) };
                // A name that is not UTF-8 cannot equal a header the filter reads (see wire).
                std::str::from_utf8(k).ok().map(|k| (k, v))
            })
            .collect();
        Ok(HeaderMap::from_pairs(&pairs))
    }

    fn replace_header(&self, map: Map, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.set(map, name, Buffer::of(value))
    }

    fn add_header(&self, map: Map, name: &str, value: &[u8]) -> Result<(), HostError> {
        // SAFETY: the buffers outlive the call; Envoy copies them.
        let done = unsafe {
            abi::envoy_dynamic_module_callback_http_add_header(
                self.envoy,
                header_type(map),
                Buffer::of(name.as_bytes()),
                Buffer::of(value),
            )
        };
        self.edited(map, done)
    }

    fn remove_header(&self, map: Map, name: &str) -> Result<(), HostError> {
        self.set(map, name, Buffer::NULL)
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        // The only property the filter reads; any other is absent here.
        if path != ["xds", "cluster_name"] {
            return None;
        }
        let mut out = Buffer::NULL;
        // SAFETY: `out` is written by Envoy and read before any other call.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.envoy,
                abi::ATTRIBUTE_XDS_CLUSTER_NAME,
                &mut out,
            )
        };
        // SAFETY: valid until the end of the callback; copied now.
        found.then(|| unsafe { out.bytes() }.to_vec())
    }

    fn set_property(&self, path: &str, value: &[u8]) -> Result<(), HostError> {
        // Filter state under the same key, without Wasm's `wasm.` prefix.
        // SAFETY: the buffers outlive the call; Envoy copies them.
        ok(unsafe {
            abi::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.envoy,
                Buffer::of(path.as_bytes()),
                Buffer::of(value),
            )
        })
    }

    fn plugin_configuration(&self) -> Result<Vec<u8>, HostError> {
        Err(HostError)
    }

    fn now_s(&self) -> u64 {
        now_s()
    }

    fn random_bytes(&self, buf: &mut [u8]) -> bool {
        getrandom::getrandom(buf).is_ok()
    }

    fn send_local_response(&self, status: u32, headers: &[(&str, String)], body: &[u8]) -> bool {
        send_response(self.envoy, status, headers, body);
        true
    }

    fn define_counter(&self, _: &str) -> Option<u32> {
        None
    }

    fn increment_counter(&self, id: u32, by: i64) -> Result<(), HostError> {
        let id = usize::try_from(id).map_err(|_| HostError)?;
        self.increment(id, u64::try_from(by).unwrap_or(0))
    }

    fn log_enabled(&self, l: LogLevel) -> bool {
        log_enabled(l)
    }

    fn log(&self, l: LogLevel, msg: fmt::Arguments<'_>) {
        log(l, msg)
    }
}

/// A local reply (`send_response` returns nothing: Envoy takes it over).
pub fn send_response(
    envoy: abi::FilterEnvoyPtr,
    status: u32,
    headers: &[(&str, String)],
    body: &[u8],
) {
    let mut raw: Vec<Header> = headers
        .iter()
        .map(|(k, v)| Header {
            key: Buffer::of(k.as_bytes()),
            value: Buffer::of(v.as_bytes()),
        })
        .collect();
    // SAFETY: every buffer outlives the call; Envoy copies them.
    unsafe {
        abi::envoy_dynamic_module_callback_http_send_response(
            envoy,
            status,
            raw.as_mut_ptr(),
            raw.len(),
            Buffer::of(body),
            Buffer::of(b"session_guard"),
        )
    }
}

/// The native form of Proxy-Wasm shared data (the logout denylist): process memory, shared by
/// every worker and every filter config of this module, with the same compare-and-swap tokens.
/// Like Wasm shared data, it outlives configuration pushes and ends with the process.
mod shared {
    use session_guard::hostapi::HostError;
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    type Store = HashMap<String, (Vec<u8>, u32)>;

    fn store() -> std::sync::MutexGuard<'static, Store> {
        static STORE: OnceLock<Mutex<Store>> = OnceLock::new();
        let m = STORE.get_or_init(|| Mutex::new(HashMap::new()));
        // A panic while holding the lock cannot leave an entry half-written (one insert).
        m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(key: &str) -> Option<(Vec<u8>, u32)> {
        store().get(key).cloned()
    }

    pub fn set(key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
        let mut s = store();
        let current = s.get(key).map_or(0, |(_, c)| *c);
        if cas != 0 && cas != current {
            return Err(HostError);
        }
        s.insert(
            key.to_owned(),
            (value.to_vec(), current.wrapping_add(1).max(1)),
        );
        Ok(())
    }
}
