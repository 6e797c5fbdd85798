//! The host calls the filter makes, declared here rather than taken from
//! `proxy_wasm::hostcalls`: the SDK's wrappers `panic!` on any status they do not expect and
//! `unwrap` header names as UTF-8, and a panic kills the worker's VM. Every call here returns
//! a `Result`/`Option`; the caller decides, and counts.
//!
//! Memory the host returns was allocated through the SDK's exported
//! `proxy_on_memory_allocate` (the global allocator), so it is owned with `Vec::from_raw_parts`.

use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};
use session_guard::hostapi::{Host, HostError, LogLevel as HostLevel, Map};
use std::ptr::null_mut;

// The log level comes back as a plain u32 here (the SDK reads it straight into an enum,
// which a value outside the enum would make undefined behaviour).
#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_log_level(return_level: *mut u32) -> Status;
    fn proxy_log(level: LogLevel, message_data: *const u8, message_size: usize) -> Status;
}

/// A `log` backend on `proxy_log` that ignores host errors (the SDK's unwraps them).
struct HostLogger;

static LOGGER: HostLogger = HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        let message = record.args().to_string();
        // SAFETY: the message outlives the call.
        let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
    }

    fn flush(&self) {}
}

/// Installs the logger at info, without a host call (it runs while the VM starts).
pub fn install_logger() {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// Sets the level to what Envoy prints for this plugin, so lines Envoy would drop are never
/// formatted.
pub fn init_logging() {
    install_logger();
    let mut raw = 2u32;
    // SAFETY: the out-pointer is valid for the call.
    let level = match unsafe { proxy_get_log_level(&mut raw) } {
        Status::Ok => raw,
        _ => 2,
    };
    log::set_max_level(match level {
        0 => log::LevelFilter::Trace,
        1 => log::LevelFilter::Debug,
        2 => log::LevelFilter::Info,
        3 => log::LevelFilter::Warn,
        4 => log::LevelFilter::Error,
        _ => log::LevelFilter::Off,
    });
}

// Header maps.
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
    fn proxy_add_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_replace_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_remove_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
    ) -> Status;
}

// Configuration, properties, clock, metrics, local replies.
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> Status;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> Status;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> Status;
    fn proxy_define_metric(
        metric_type: MetricType,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> Status;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> Status;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> Status;
}

// Shared data (the logout denylist).
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> Status;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> Status;
}

/// A shared-data value and its CAS token; `None` when absent or on any error.
pub fn shared_get(key: &str) -> Option<(Vec<u8>, u32)> {
    let mut data = null_mut();
    let mut size = 0;
    let mut cas = 0;
    // SAFETY: as in `header_map`.
    unsafe {
        match proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) {
            Status::Ok => Some((owned(data, size), cas)),
            _ => None,
        }
    }
}

/// Sets a shared-data value if its CAS token is still `cas` (0: unconditionally).
pub fn shared_set(key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
    // SAFETY: pointers describe live slices for the duration of the call.
    ok(unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) })
}

/// Takes ownership of a host-allocated buffer (empty when the host returned none).
///
/// # Safety
/// `data`/`size` must come from a host call that allocated through `proxy_on_memory_allocate`.
unsafe fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        Vec::from_raw_parts(data, size, size)
    }
}

pub use session_guard::wire::{serialize_map, HeaderMap};

pub fn header_map(map: MapType) -> Result<HeaderMap, Status> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: out-pointers are valid for the call; the buffer is then ours.
    let bytes = unsafe {
        match proxy_get_header_map_pairs(map, &mut data, &mut size) {
            Status::Ok => owned(data, size),
            other => return Err(other),
        }
    };
    Ok(HeaderMap::from_wire(bytes))
}

pub fn plugin_configuration() -> Result<Vec<u8>, Status> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: as in `header_map`.
    unsafe {
        match proxy_get_buffer_bytes(
            BufferType::PluginConfiguration,
            0,
            usize::MAX,
            &mut data,
            &mut size,
        ) {
            Status::Ok => Ok(owned(data, size)),
            Status::NotFound => Ok(Vec::new()),
            other => Err(other),
        }
    }
}

/// Sets filter state `wasm.<path>` (Envoy); a status other than Ok is an error, never a panic.
pub fn set_property(path: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: pointers describe live slices for the duration of the call.
    ok(unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) })
}

/// A property such as `["xds", "cluster_name"]`; `None` when absent or on any error.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    let serialized = path.join("\0");
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: as in `header_map`.
    unsafe {
        match proxy_get_property(serialized.as_ptr(), serialized.len(), &mut data, &mut size) {
            Status::Ok if !data.is_null() => Some(owned(data, size)),
            _ => None,
        }
    }
}

fn ok(status: Status) -> Result<(), Status> {
    match status {
        Status::Ok => Ok(()),
        other => Err(other),
    }
}

pub fn replace_header(map: MapType, name: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: pointers describe live slices for the duration of the call.
    ok(unsafe {
        proxy_replace_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

pub fn add_header(map: MapType, name: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: as above.
    ok(unsafe {
        proxy_add_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

pub fn remove_header(map: MapType, name: &str) -> Result<(), Status> {
    // SAFETY: as above.
    ok(unsafe { proxy_remove_header_map_value(map, name.as_ptr(), name.len()) })
}

/// Seconds since the Unix epoch, from the host's clock; 0 if it is unavailable.
pub fn now_s() -> u64 {
    let mut ns = 0u64;
    // SAFETY: the out-pointer is valid for the call.
    match unsafe { proxy_get_current_time_nanoseconds(&mut ns) } {
        Status::Ok => ns / 1_000_000_000,
        _ => 0,
    }
}

pub fn define_counter(name: &str) -> Option<u32> {
    let mut id = 0u32;
    // SAFETY: as above.
    let status =
        unsafe { proxy_define_metric(MetricType::Counter, name.as_ptr(), name.len(), &mut id) };
    (status == Status::Ok).then_some(id)
}

pub fn increment(id: u32, by: i64) -> Result<(), Status> {
    // SAFETY: no pointers.
    ok(unsafe { proxy_increment_metric(id, by) })
}

pub fn send_local_response(status: u32, headers: &[(&str, String)], body: &[u8]) -> bool {
    let map = serialize_map(headers);
    let details = b"session_guard";
    // SAFETY: every pointer/length pair describes a live, immutable buffer for the call.
    let status = unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            map.as_ptr(),
            map.len(),
            -1,
        )
    };
    status == Status::Ok
}

/// Logs a panic, should one ever happen, at critical level through the host (as the SDK's
/// own logger does): without it, the VM would abort without a word in Envoy's log.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        // The message and where, without `PanicHookInfo`'s Display (kilobytes of wasm).
        let (file, line) = info.location().map_or(("-", 0), |l| (l.file(), l.line()));
        let payload = info.payload();
        let what = match payload.downcast_ref::<&str>() {
            Some(s) => s,
            None => payload.downcast_ref::<String>().map_or("-", String::as_str),
        };
        let message = format!("panicked at {file}:{line}: {what}");
        // SAFETY: the message outlives the call.
        let _ = unsafe { proxy_log(LogLevel::Critical, message.as_ptr(), message.len()) };
    }));
}

/// [`Host`] on the Proxy-Wasm ABI: the functions above.
#[derive(Debug, Clone, Copy, Default)]
pub struct WasmHost;

fn map_type(map: Map) -> MapType {
    match map {
        Map::Request => MapType::HttpRequestHeaders,
        Map::Response => MapType::HttpResponseHeaders,
        Map::RequestTrailers => MapType::HttpRequestTrailers,
        Map::ResponseTrailers => MapType::HttpResponseTrailers,
    }
}

fn log_level(level: HostLevel) -> log::Level {
    match level {
        HostLevel::Debug => log::Level::Debug,
        HostLevel::Info => log::Level::Info,
        HostLevel::Warn => log::Level::Warn,
        HostLevel::Error => log::Level::Error,
    }
}

impl Host for WasmHost {
    fn header_map(&self, map: Map) -> Result<HeaderMap, HostError> {
        header_map(map_type(map)).map_err(|_| HostError)
    }
    fn replace_header(&self, map: Map, name: &str, value: &[u8]) -> Result<(), HostError> {
        replace_header(map_type(map), name, value).map_err(|_| HostError)
    }
    fn add_header(&self, map: Map, name: &str, value: &[u8]) -> Result<(), HostError> {
        add_header(map_type(map), name, value).map_err(|_| HostError)
    }
    fn remove_header(&self, map: Map, name: &str) -> Result<(), HostError> {
        remove_header(map_type(map), name).map_err(|_| HostError)
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        property(path)
    }
    fn set_property(&self, path: &str, value: &[u8]) -> Result<(), HostError> {
        set_property(path, value).map_err(|_| HostError)
    }
    fn plugin_configuration(&self) -> Result<Vec<u8>, HostError> {
        plugin_configuration().map_err(|_| HostError)
    }
    fn now_s(&self) -> u64 {
        now_s()
    }
    fn random_bytes(&self, buf: &mut [u8]) -> bool {
        getrandom::getrandom(buf).is_ok()
    }
    fn send_local_response(&self, status: u32, headers: &[(&str, String)], body: &[u8]) -> bool {
        send_local_response(status, headers, body)
    }
    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        shared_get(key)
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
        shared_set(key, value, cas).map_err(|_| HostError)
    }
    fn define_counter(&self, name: &str) -> Option<u32> {
        define_counter(name)
    }
    fn increment_counter(&self, id: u32, by: i64) -> Result<(), HostError> {
        increment(id, by).map_err(|_| HostError)
    }
    fn log_enabled(&self, level: HostLevel) -> bool {
        log::log_enabled!(log_level(level))
    }
    fn log(&self, level: HostLevel, msg: std::fmt::Arguments<'_>) {
        log::log!(log_level(level), "{msg}");
    }
}
