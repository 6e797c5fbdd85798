//! Bench only (`make bench BENCH_HOSTCALLS=1`): prices single Proxy-Wasm host calls in Envoy's
//! V8 runtime. The plugin configuration is `<op>:<n>`; every request performs `op` n times (in
//! on_http_request_headers, or on_http_response_headers for `resp_*` ops). Extra time per
//! request over this module doing nothing (`none`), divided by n, is the price of one call.
//! `seq=<step>+<step>...:<n>` (and `steady_calls`, session-guard's calls on a steady request)
//! runs a sequence of single calls, to see first-call and ordering effects. Results are kept
//! alive with `black_box` so nothing is optimised away; errors are ignored (never a panic).

use hmac::{Hmac, Mac};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use sha2::Sha256;
use std::hint::black_box;
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    None,
    /// get_map_bytes(request headers): the whole map, serialized by the host
    ReqHeadersMap,
    /// get_map_value_bytes(request headers, "cookie"): one header by name
    ReqHeaderOne,
    /// get_map_bytes(response headers)
    RespHeadersMap,
    /// get_property(["xds", "cluster_name"])
    PropertyCluster,
    /// get_current_time
    Time,
    /// WASI random_get, 16 bytes
    Random,
    /// increment_metric on a counter defined at configure time
    Metric,
    /// set_map_value_bytes(request headers, "x-probe", ...)
    SetHeader,
    /// HMAC-SHA256 over 120 bytes: pure Wasm compute, no host call
    Hmac,
    /// HMAC-SHA256 over 120 bytes from a keyed state cloned per use (keying done once)
    HmacPrekeyed,
    /// A sequence of single calls, once per request: `seq=<step>+<step>...` (see `Step`);
    /// `steady_calls` is the sequence session-guard makes on a steady request.
    Seq,
}

/// One call of a sequence. Request steps run in on_http_request_headers, `resp_*` in
/// on_http_response_headers.
#[derive(Clone, Copy, PartialEq)]
enum Step {
    ReqMap,
    Time,
    Cluster,
    RmCookie,
    SetSid,
    Metric,
    RespMap,
    RespTime,
    /// set_property("session_guard.session", 16 hex digits): filter state
    Prop,
    /// set_property("session_guard.decision", a word)
    Prop2,
    /// set_property("session_guard.decision", ...) in the response phase
    RespProp,
    /// increment_metric in the response phase
    RespMetric,
    /// WASI random_get, 16 bytes (an ID drawn)
    Random,
    /// set_map_value_bytes(request headers, "x-session-id-next", 22 bytes)
    SetNext,
    /// get_shared_data of one logout-denylist bucket (a valid session's lookup, issue 28)
    Shared,
}

const STEADY: &str = "req_map+time+cluster+rm_cookie+set_sid+metric+resp_map+resp_time";

/// The steps of `list`; `None` if any name is unknown (the plugin then refuses its
/// configuration, so a sequence never silently runs fewer calls than it names).
fn parse_steps(list: &str) -> Option<Vec<Step>> {
    list.split('+')
        .map(|s| match s {
            "req_map" => Some(Step::ReqMap),
            "time" => Some(Step::Time),
            "cluster" => Some(Step::Cluster),
            "rm_cookie" => Some(Step::RmCookie),
            "set_sid" => Some(Step::SetSid),
            "metric" => Some(Step::Metric),
            "resp_map" => Some(Step::RespMap),
            "resp_time" => Some(Step::RespTime),
            "prop" => Some(Step::Prop),
            "prop2" => Some(Step::Prop2),
            "resp_prop" => Some(Step::RespProp),
            "resp_metric" => Some(Step::RespMetric),
            "random" => Some(Step::Random),
            "set_next" => Some(Step::SetNext),
            "shared" => Some(Step::Shared),
            _ => None,
        })
        .collect()
}

#[derive(Default)]
struct Root {
    cfg: Rc<(Option<Op>, u32, u32)>,
    steps: Rc<Vec<Step>>,
}

thread_local! {
    static KEYED: Option<Hmac<Sha256>> = Hmac::<Sha256>::new_from_slice(&[7u8; 32]).ok();
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let raw = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&raw);
        let (name, n) = text.trim().split_once(':').unwrap_or((text.trim(), "1"));
        let op = match name {
            "req_headers_map" => Op::ReqHeadersMap,
            "req_header_one" => Op::ReqHeaderOne,
            "resp_headers_map" => Op::RespHeadersMap,
            "property_cluster" => Op::PropertyCluster,
            "time" => Op::Time,
            "random" => Op::Random,
            "metric" => Op::Metric,
            "set_header" => Op::SetHeader,
            "hmac" => Op::Hmac,
            "hmac_prekeyed" => Op::HmacPrekeyed,
            "steady_calls" => {
                let Some(steps) = parse_steps(STEADY) else {
                    return false;
                };
                self.steps = Rc::new(steps);
                Op::Seq
            }
            seq if seq.starts_with("seq=") => {
                let Some(steps) = parse_steps(seq.trim_start_matches("seq=")) else {
                    return false;
                };
                self.steps = Rc::new(steps);
                Op::Seq
            }
            _ => Op::None,
        };
        let metric =
            hostcalls::define_metric(MetricType::Counter, "hostcall_probe.calls").unwrap_or(0);
        self.cfg = Rc::new((Some(op), n.parse().unwrap_or(1), metric));
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        let (op, n, metric) = *self.cfg;
        Some(Box::new(Probe {
            op: op.unwrap_or(Op::None),
            n,
            metric,
            steps: Rc::clone(&self.steps),
        }))
    }
}

struct Probe {
    op: Op,
    n: u32,
    metric: u32,
    steps: Rc<Vec<Step>>,
}

impl Probe {
    fn run(&self, response: bool) {
        if self.op == Op::Seq {
            for _ in 0..self.n {
                for step in self.steps.iter() {
                    run_step(*step, response, self.metric);
                }
            }
            return;
        }
        if (self.op == Op::RespHeadersMap) != response {
            return;
        }
        for i in 0..self.n {
            match self.op {
                Op::None => {}
                Op::ReqHeadersMap => {
                    black_box(hostcalls::get_map_bytes(MapType::HttpRequestHeaders).ok());
                }
                Op::ReqHeaderOne => {
                    black_box(
                        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "cookie").ok(),
                    );
                }
                Op::RespHeadersMap => {
                    black_box(hostcalls::get_map_bytes(MapType::HttpResponseHeaders).ok());
                }
                Op::PropertyCluster => {
                    black_box(hostcalls::get_property(vec!["xds", "cluster_name"]).ok());
                }
                Op::Time => {
                    black_box(hostcalls::get_current_time().ok());
                }
                Op::Random => {
                    let mut b = [0u8; 16];
                    black_box(getrandom::getrandom(&mut b).ok());
                    black_box(b);
                }
                Op::Metric => {
                    black_box(hostcalls::increment_metric(self.metric, 1).ok());
                }
                Op::SetHeader => {
                    let v = [b'a' + (i % 26) as u8; 22];
                    black_box(
                        hostcalls::set_map_value_bytes(
                            MapType::HttpRequestHeaders,
                            "x-probe",
                            Some(&v),
                        )
                        .ok(),
                    );
                }
                Op::HmacPrekeyed => {
                    KEYED.with(|k| {
                        if let Some(k) = k {
                            let mut mac = k.clone();
                            mac.update(black_box(&[i as u8; 120]));
                            black_box(mac.finalize().into_bytes());
                        }
                    });
                }
                Op::Seq => {}
                Op::Hmac => {
                    if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&[7u8; 32]) {
                        mac.update(black_box(&[i as u8; 120]));
                        black_box(mac.finalize().into_bytes());
                    }
                }
            }
        }
    }
}

fn run_step(step: Step, response: bool, metric: u32) {
    let t = MapType::HttpRequestHeaders;
    match (step, response) {
        (Step::ReqMap, false) => {
            black_box(hostcalls::get_map_bytes(t).ok());
        }
        (Step::Time, false) | (Step::RespTime, true) => {
            black_box(hostcalls::get_current_time().ok());
        }
        (Step::Cluster, false) => {
            black_box(hostcalls::get_property(vec!["xds", "cluster_name"]).ok());
        }
        (Step::RmCookie, false) => {
            black_box(hostcalls::remove_map_value(t, "cookie").ok());
        }
        (Step::SetSid, false) => {
            black_box(hostcalls::set_map_value_bytes(t, "x-session-id", Some(&[b'a'; 22])).ok());
        }
        (Step::Metric, false) => {
            black_box(hostcalls::increment_metric(metric, 1).ok());
        }
        (Step::Prop, false) => {
            black_box(
                hostcalls::set_property(vec!["session_guard.session"], Some(b"0123456789abcdef"))
                    .ok(),
            );
        }
        (Step::Prop2, false) => {
            black_box(hostcalls::set_property(vec!["session_guard.decision"], Some(b"valid")).ok());
        }
        (Step::RespProp, true) => {
            black_box(
                hostcalls::set_property(vec!["session_guard.decision"], Some(b"forwarded")).ok(),
            );
        }
        (Step::RespMetric, true) => {
            black_box(hostcalls::increment_metric(metric, 1).ok());
        }
        (Step::Random, false) => {
            let mut b = [0u8; 16];
            black_box(getrandom::getrandom(&mut b).ok());
            black_box(b);
        }
        (Step::SetNext, false) => {
            black_box(
                hostcalls::set_map_value_bytes(t, "x-session-id-next", Some(&[b'b'; 22])).ok(),
            );
        }
        (Step::Shared, false) => {
            black_box(hostcalls::get_shared_data("session_guard.logout.00").ok());
        }
        (Step::RespMap, true) => {
            black_box(hostcalls::get_map_bytes(MapType::HttpResponseHeaders).ok());
        }
        _ => {}
    }
}

impl Context for Probe {}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        self.run(false);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.run(true);
        Action::Continue
    }
}
