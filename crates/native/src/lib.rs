//! The session-guard Envoy dynamic module (`envoy.filters.http.dynamic_modules`): the same
//! filter as the Wasm build, called through Envoy's C ABI with no VM in between. This crate is
//! the native build's only `unsafe`: `abi` declares the ABI, `host` implements the core's
//! `Host` on it, this file exports the event hooks Envoy calls, and `unused` the hooks the
//! ABI requires although session-guard never triggers them.
//!
//! Every hook runs its body under `catch_unwind`: a panic (a bug; the core is written not to
//! panic) fails that one request closed, a local 500 counted as `internal_error`, and never
//! unwinds into Envoy. The module is therefore built with unwinding (`release-native`
//! profile), never with `panic = "abort"`, which would take the whole Envoy down.

mod abi;
mod host;
mod unused;

use host::{ConfigHost, StreamHost};
use session_guard::filter::{self, Flow};
use session_guard::hostapi::{LogLevel, Map};
use std::cell::Cell;
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The `filter_name` this module answers to.
const FILTER_NAME: &[u8] = b"session_guard";

/// One filter configuration: shared by every worker's streams.
struct Config {
    root: filter::Root,
    /// The `internal_error` counter's id, for the failures the core cannot count (a panic).
    internal_error: Option<usize>,
}

/// One HTTP stream. `stream` is `None` after a panic: the stream was failed closed and the
/// rest of its callbacks pass through.
struct Stream {
    stream: Option<filter::Stream>,
    internal_error: Option<usize>,
}

// Envoy creates streams on its worker threads from the one configuration.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<Config>();
};

/// Runs `f`, or returns `fallback` if it panicked.
fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// Reports a panic by location only: its message could quote request bytes.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let (file, line) = info.location().map_or(("?", 0), |l| (l.file(), l.line()));
        host::log(
            LogLevel::Error,
            format_args!("session_guard: panic at {file}:{line}; the request failed closed"),
        );
    }));
}

/// Loads on Envoy 1.40 and later only: an older Envoy (whose ABI lacks 1.40's callbacks, and
/// whose enums may number differently) gets null, and refuses the module with an error
/// instead of running it on a mismatched ABI.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    guard((), install_panic_hook);
    // SAFETY: a NUL-terminated name; dlsym only looks it up.
    let floor = unsafe { abi::dlsym(std::ptr::null_mut(), abi::ENVOY_1_40_SYMBOL.as_ptr().cast()) };
    if floor.is_null() {
        host::log(
            LogLevel::Error,
            format_args!(
                "session_guard: this module needs Envoy 1.40 or later (dynamic-module ABI v0.2.0); refusing to load"
            ),
        );
        return std::ptr::null();
    }
    abi::ABI_VERSION.as_ptr().cast()
}

fn configure(envoy: abi::ConfigEnvoyPtr, name: &[u8], bytes: &[u8]) -> Option<Config> {
    if name != FILTER_NAME {
        host::log(
            LogLevel::Error,
            format_args!("session_guard: unknown filter_name; expected \"session_guard\""),
        );
        return None;
    }
    let host = ConfigHost {
        envoy,
        config: bytes,
        internal_error: Cell::new(None),
    };
    let mut root = filter::Root::default();
    let env = |name: &str| std::env::var(name).ok();
    if !root.configure(&host, &env) {
        return None;
    }
    Some(Config {
        root,
        internal_error: host.internal_error.get(),
    })
}

/// # Safety
/// Envoy passes buffers valid for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    envoy: abi::ConfigEnvoyPtr,
    name: abi::Buffer,
    config: abi::Buffer,
) -> *const c_void {
    guard(std::ptr::null(), || {
        // SAFETY: Envoy's buffers are valid for this call.
        let (name, bytes) = unsafe { (name.bytes(), config.bytes()) };
        match configure(envoy, name, bytes) {
            Some(c) => Box::into_raw(Box::new(c)).cast_const().cast(),
            None => std::ptr::null(),
        }
    })
}

/// # Safety
/// `config` is null or what `envoy_dynamic_module_on_http_filter_config_new` returned.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    if !config.is_null() {
        // SAFETY: created by Box::into_raw in config_new; Envoy destroys it once.
        guard((), || {
            drop(unsafe { Box::from_raw(config.cast_mut().cast::<Config>()) })
        });
    }
}

/// # Safety
/// `config` is what `envoy_dynamic_module_on_http_filter_config_new` returned.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _envoy: abi::FilterEnvoyPtr,
) -> *const c_void {
    // SAFETY: Envoy keeps the configuration alive while any of its streams exists.
    let Some(config) = (unsafe { config.cast::<Config>().as_ref() }) else {
        return std::ptr::null();
    };
    guard(std::ptr::null(), || {
        let stream = Stream {
            stream: Some(config.root.stream()),
            internal_error: config.internal_error,
        };
        Box::into_raw(Box::new(stream)).cast_const().cast()
    })
}

/// # Safety
/// `stream` is null or what `envoy_dynamic_module_on_http_filter_new` returned.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(stream: *const c_void) {
    if !stream.is_null() {
        // SAFETY: created by Box::into_raw in filter_new; Envoy destroys it once.
        guard((), || {
            drop(unsafe { Box::from_raw(stream.cast_mut().cast::<Stream>()) })
        });
    }
}

/// Runs one header callback of `stream`; a panic fails the request closed (500, counted).
///
/// # Safety
/// `stream` is null or a live `Stream` of this `envoy` filter, used by one thread at a time.
unsafe fn on_headers(
    envoy: abi::FilterEnvoyPtr,
    stream: *const c_void,
    call: fn(&mut filter::Stream, &StreamHost) -> Flow,
) -> u32 {
    // SAFETY: Envoy calls a stream's hooks on its worker thread, one at a time.
    let Some(s) = (unsafe { stream.cast_mut().cast::<Stream>().as_mut() }) else {
        return abi::CONTINUE;
    };
    let host = StreamHost::new(envoy);
    let flow = guard(None, || s.stream.as_mut().map(|inner| call(inner, &host)));
    match flow {
        Some(Flow::Continue) => abi::CONTINUE,
        Some(Flow::Pause) => abi::STOP_ITERATION,
        None if s.stream.is_none() => abi::CONTINUE,
        None => {
            s.stream = None;
            fail_closed(&host, s.internal_error)
        }
    }
}

fn fail_closed(host: &StreamHost, internal_error: Option<usize>) -> u32 {
    guard(abi::CONTINUE, || {
        if let Some(id) = internal_error {
            let _ = host.increment(id, 1);
        }
        host::send_response(host.envoy, 500, &[], b"session_guard: internal error\n");
        abi::STOP_ITERATION
    })
}

/// # Safety
/// Envoy's contract for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: abi::FilterEnvoyPtr,
    stream: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: forwarded contract.
    unsafe { on_headers(envoy, stream, |s, h| s.on_request_headers(h)) }
}

/// # Safety
/// Envoy's contract for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    envoy: abi::FilterEnvoyPtr,
    stream: *const c_void,
) -> u32 {
    // SAFETY: forwarded contract.
    unsafe { on_headers(envoy, stream, |s, h| s.on_trailers(h, Map::RequestTrailers)) }
}

/// # Safety
/// Envoy's contract for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    envoy: abi::FilterEnvoyPtr,
    stream: *const c_void,
) -> u32 {
    // SAFETY: forwarded contract.
    unsafe {
        on_headers(envoy, stream, |s, h| {
            s.on_trailers(h, Map::ResponseTrailers)
        })
    }
}

/// # Safety
/// Envoy's contract for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: abi::FilterEnvoyPtr,
    stream: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: forwarded contract.
    unsafe { on_headers(envoy, stream, |s, h| s.on_response_headers(h)) }
}
