//! The few declarations of Envoy's dynamic-module ABI that session-guard uses, written by hand
//! from `source/extensions/dynamic_modules/abi/abi.h` (Envoy 1.40, ABI `v0.2.0`) rather than
//! generated: the official SDK is git-only and needs bindgen. Every name here was checked
//! against the symbols the Envoy 1.40 binary exports (`nm -D`).
//!
//! C enums cross the ABI as `u32`/`i32`-sized integers; the values used are the constants
//! below. Buffers are (pointer, length) structs passed by value.

use std::ffi::c_void;

/// The ABI version this module was written against (`ENVOY_DYNAMIC_MODULES_ABI_VERSION` of
/// Envoy 1.40). Envoy compares it at load time: equal is "matched"; another one only warns.
pub const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// A callback Envoy 1.40 added to the ABI (1.39, ABI v0.1.0, lacks it). Envoy only warns when
/// a module's ABI version differs from its own, so the module checks the floor itself: without
/// this symbol in the process it refuses to load (`envoy_dynamic_module_on_program_init`).
pub const ENVOY_1_40_SYMBOL: &[u8] =
    b"envoy_dynamic_module_callback_http_filter_get_generic_secret\0";

extern "C" {
    /// glibc's `dlsym`; a null handle is `RTLD_DEFAULT` (the process's global symbols, where
    /// Envoy exports its callbacks).
    pub fn dlsym(handle: *mut c_void, symbol: *const std::ffi::c_char) -> *mut c_void;
}

/// `envoy_dynamic_module_type_envoy_buffer` / `_module_buffer`: bytes owned by one side.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Buffer {
    pub ptr: *const u8,
    pub len: usize,
}

impl Buffer {
    pub const NULL: Buffer = Buffer {
        ptr: std::ptr::null(),
        len: 0,
    };

    pub fn of(bytes: &[u8]) -> Buffer {
        Buffer {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// The bytes of a buffer Envoy handed over; empty when null.
    ///
    /// # Safety
    /// `ptr` must be null or valid for `len` bytes for the returned lifetime.
    pub unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            // SAFETY: the caller's contract.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// `envoy_dynamic_module_type_{envoy,module}_http_header`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub key: Buffer,
    pub value: Buffer,
}

impl Header {
    pub const NULL: Header = Header {
        key: Buffer::NULL,
        value: Buffer::NULL,
    };
}

/// `envoy_dynamic_module_type_http_header_type`.
pub type HeaderType = u32;
pub const REQUEST_HEADER: HeaderType = 0;
pub const REQUEST_TRAILER: HeaderType = 1;
pub const RESPONSE_HEADER: HeaderType = 2;
pub const RESPONSE_TRAILER: HeaderType = 3;

/// `envoy_dynamic_module_type_log_level`.
pub type Level = u32;
pub const LOG_DEBUG: Level = 1;
pub const LOG_INFO: Level = 2;
pub const LOG_WARN: Level = 3;
pub const LOG_ERROR: Level = 4;

/// `envoy_dynamic_module_type_attribute_id`: `xds.cluster_name`, the routed cluster (what
/// the Wasm build reads as the property `xds.cluster_name`).
pub type AttributeId = u32;
pub const ATTRIBUTE_XDS_CLUSTER_NAME: AttributeId = 57;

/// `envoy_dynamic_module_type_metrics_result_Success`.
pub const METRICS_SUCCESS: u32 = 0;

/// The `*_status` enums' `Continue` and `StopIteration` (the same values in every one).
pub const CONTINUE: u32 = 0;
pub const STOP_ITERATION: u32 = 1;

/// Envoy's `DynamicModuleHttpFilterConfig` / `DynamicModuleHttpFilter` (opaque).
pub type ConfigEnvoyPtr = *mut c_void;
pub type FilterEnvoyPtr = *mut c_void;

extern "C" {
    pub fn envoy_dynamic_module_callback_log(level: Level, message: Buffer);
    pub fn envoy_dynamic_module_callback_log_enabled(level: Level) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: ConfigEnvoyPtr,
        name: Buffer,
        label_names: *mut Buffer,
        label_names_len: usize,
        counter_id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *mut Buffer,
        label_values_len: usize,
        value: u64,
    ) -> u32;

    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
        result: *mut Header,
    ) -> bool;
    /// Replaces every value of `key`; a null `value` removes the header.
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
        key: Buffer,
        value: Buffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_add_header(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
        key: Buffer,
        value: Buffer,
    ) -> bool;

    /// Makes Envoy pick the route again (after a request header edit, as the Wasm host does).
    pub fn envoy_dynamic_module_callback_http_clear_route_cache(filter: FilterEnvoyPtr);

    pub fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterEnvoyPtr,
        status: u32,
        headers: *mut Header,
        headers_len: usize,
        body: Buffer,
        details: Buffer,
    );

    pub fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: FilterEnvoyPtr,
        key: Buffer,
        value: Buffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: FilterEnvoyPtr,
        id: AttributeId,
        result: *mut Buffer,
    ) -> bool;
}
