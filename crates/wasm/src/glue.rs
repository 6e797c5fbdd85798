//! The Proxy-Wasm contexts: a thin wrapper that forwards Envoy's callbacks to `filter` with
//! the wasm [`WasmHost`]. This module and `host.rs` are the
//! crate's only wasm-only code.

use crate::host::{self, WasmHost};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use session_guard::filter::{self, Flow};
use session_guard::hostapi::Map;

pub fn start() {
    host::install_logger();
    host::install_panic_hook();
    proxy_wasm::set_root_context(|_| Box::new(Root::default()));
}

#[derive(Default)]
struct Root(filter::Root);

impl Context for Root {}

impl RootContext for Root {
    fn on_vm_start(&mut self, _: usize) -> bool {
        // Which build runs: a log line and the counter session_guard.build.<version>.
        log::info!(concat!(
            "session-guard ",
            env!("CARGO_PKG_VERSION"),
            " VM started"
        ));
        let _ = host::define_counter(concat!("session_guard.build.", env!("CARGO_PKG_VERSION")))
            .map(|id| host::increment(id, 1));
        true
    }

    fn on_configure(&mut self, _: usize) -> bool {
        // Formatting debug lines costs time; only do it when Envoy would print them.
        host::init_logging();
        self.0
            .configure(&WasmHost, &|name| std::env::var(name).ok())
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http(self.0.stream())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http(filter::Stream);

impl Context for Http {}

fn action(flow: Flow) -> Action {
    match flow {
        Flow::Continue => Action::Continue,
        Flow::Pause => Action::Pause,
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        action(self.0.on_request_headers(&WasmHost))
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        action(self.0.on_response_headers(&WasmHost))
    }

    fn on_http_request_trailers(&mut self, _: usize) -> Action {
        action(self.0.on_trailers(&WasmHost, Map::RequestTrailers))
    }

    fn on_http_response_trailers(&mut self, _: usize) -> Action {
        action(self.0.on_trailers(&WasmHost, Map::ResponseTrailers))
    }
}
