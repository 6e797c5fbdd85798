//! Hooks Envoy 1.40 requires every HTTP dynamic module to export (it refuses the module at
//! configuration load if one is missing), for features session-guard never uses: bodies (it never
//! reads them: they pass as they came; trailers are in lib.rs), HTTP callouts and streams,
//! scheduled events, watermarks, per-route configuration. Each does nothing and lets the
//! stream continue.

use crate::abi::{self, Buffer, Header};
use std::ffi::c_void;

type Filter = abi::FilterEnvoyPtr;
type Module = *const c_void;
type ConfigEnvoy = abi::ConfigEnvoyPtr;

/// A per-route configuration is refused (null): session-guard is configured per listener.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: Buffer,
    _config: Buffer,
) -> *const c_void {
    crate::host::log(
        session_guard::hostapi::LogLevel::Error,
        format_args!("session_guard: per-route configuration is not supported"),
    );
    std::ptr::null()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(_c: Module) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _f: Filter,
    _m: Module,
    _end: bool,
) -> u32 {
    abi::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _f: Filter,
    _m: Module,
    _end: bool,
) -> u32 {
    abi::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(_f: Filter, _m: Module) {}

/// `Continue`: a local reply (session-guard's own or another filter's) is sent as is.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _f: Filter,
    _m: Module,
    _status: u32,
    _details: Buffer,
    _reset_imminent: bool,
) -> u32 {
    abi::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(_f: Filter, _m: Module, _e: u64) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _c: ConfigEnvoy,
    _m: Module,
    _e: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _f: Filter,
    _m: Module,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _f: Filter,
    _m: Module,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _f: Filter,
    _m: Module,
    _id: u64,
    _result: u32,
    _headers: *mut Header,
    _headers_len: usize,
    _body: *mut Buffer,
    _body_len: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _f: Filter,
    _m: Module,
    _id: u64,
    _headers: *mut Header,
    _headers_len: usize,
    _end: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _f: Filter,
    _m: Module,
    _id: u64,
    _data: *const Buffer,
    _data_len: usize,
    _end: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _f: Filter,
    _m: Module,
    _id: u64,
    _trailers: *mut Header,
    _trailers_len: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _f: Filter,
    _m: Module,
    _id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _f: Filter,
    _m: Module,
    _id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _c: ConfigEnvoy,
    _m: Module,
    _id: u64,
    _result: u32,
    _headers: *mut Header,
    _headers_len: usize,
    _body: *mut Buffer,
    _body_len: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    _c: ConfigEnvoy,
    _m: Module,
    _id: u64,
    _headers: *mut Header,
    _headers_len: usize,
    _end: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    _c: ConfigEnvoy,
    _m: Module,
    _id: u64,
    _data: *const Buffer,
    _data_len: usize,
    _end: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
    _c: ConfigEnvoy,
    _m: Module,
    _id: u64,
    _trailers: *mut Header,
    _trailers_len: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
    _c: ConfigEnvoy,
    _m: Module,
    _id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
    _c: ConfigEnvoy,
    _m: Module,
    _id: u64,
    _reason: u32,
) {
}
