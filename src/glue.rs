//! The Proxy-Wasm contexts: a thin wrapper that forwards Envoy's callbacks to `filter` with
//! the wasm [`WasmHost`]. Only this module and `host.rs` are wasm-only.

use crate::filter::{self, Flow};
use crate::host::{self, WasmHost};
use crate::hostapi::Map;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

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
