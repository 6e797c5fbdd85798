//! The empty filter: a root context that creates an HTTP context which does nothing.
//!
//! It measures the floor every Proxy-Wasm HTTP filter pays in Envoy's V8 runtime (context
//! creation, the host->VM calls for each callback proxy-wasm-rust-sdk dispatches, context
//! teardown), so session-guard's own cost can be read as "extra over this floor".
//! Every callback keeps the SDK's default (continue), like a filter that inspects nothing.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(EmptyRoot) });
}}

struct EmptyRoot;

impl Context for EmptyRoot {}

impl RootContext for EmptyRoot {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(EmptyHttp))
    }
}

struct EmptyHttp;

impl Context for EmptyHttp {}

impl HttpContext for EmptyHttp {}
