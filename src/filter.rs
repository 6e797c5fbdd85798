//! Proxy-Wasm glue: read headers once, ask `policy`, write the edits, count, log.
//!
//! Host calls go through `host`, whose functions return errors instead of panicking: the SDK's
//! wrappers panic on unexpected host statuses (and its `String` getters unwrap UTF-8), and a
//! panic here would take down the VM of an Envoy worker.

use crate::config::{self, Config, Mode};
use crate::host;
use crate::metrics::Counter;
use crate::policy::{
    self, Level, Pending, Record, RequestEdits, RequestOutcome, RequestView, ResponseEdits,
    ResponseView, SetCookies,
};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MapType};
use std::rc::Rc;

const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn start() {
    host::install_logger();
    proxy_wasm::set_root_context(|_| Box::new(Root::default()));
}

#[derive(Default)]
struct Root {
    config: Option<Rc<Config>>,
    metrics: Rc<Metrics>,
}

/// Metric ids by `Counter::index`; `None` where the host refused to define one.
#[derive(Default)]
struct Metrics(Vec<Option<u32>>);

impl Metrics {
    fn define() -> Self {
        Metrics(
            Counter::ALL
                .iter()
                .map(|c| host::define_counter(c.name()))
                .collect(),
        )
    }

    fn add(&self, c: Counter, n: u64) {
        if let Some(Some(id)) = self.0.get(c.index()) {
            let _ = host::increment(*id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_vm_start(&mut self, _: usize) -> bool {
        true
    }

    fn on_configure(&mut self, _: usize) -> bool {
        // Formatting debug lines costs time; only do it when Envoy would print them.
        host::init_logging();
        let bytes = host::plugin_configuration().unwrap_or_default();
        match config::parse(&bytes, &|name| std::env::var(name).ok()) {
            Ok(cfg) => {
                if self.metrics.0.is_empty() {
                    self.metrics = Rc::new(Metrics::define());
                }
                let ids = cfg.key_ids();
                log::info!(
                    "session_guard {VERSION}: configured mode={} keys=[{}] (signing: {}) cookie={} url.action={} trusted_clusters=[{}]",
                    match cfg.mode {
                        Mode::Enforce => "enforce",
                        Mode::Monitor => "monitor",
                    },
                    ids.join(","),
                    ids.first().copied().unwrap_or("-"),
                    cfg.cookie.name,
                    match cfg.url.action {
                        config::UrlAction::Strip => "strip",
                        config::UrlAction::Redirect => "redirect",
                        config::UrlAction::Reject => "reject",
                    },
                    cfg.signal.trusted_clusters.join(","),
                );
                self.config = Some(Rc::new(cfg));
                true
            }
            Err(e) => {
                log::error!("session_guard: invalid configuration: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            config: self.config.clone(),
            metrics: Rc::clone(&self.metrics),
            pending: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    /// `None` only if Envoy created a stream despite a refused configuration: pass through.
    config: Option<Rc<Config>>,
    metrics: Rc<Metrics>,
    pending: Option<Pending>,
}

impl Context for Http {}

/// Header names equal once `_` and `-` are treated alike (names arrive lowercase).
fn same_header_name(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| x == y || (matches!(x, b'_' | b'-') && matches!(y, b'_' | b'-')))
}

fn random_id() -> Option<[u8; crate::token::ID_LEN]> {
    let mut b = [0u8; crate::token::ID_LEN];
    getrandom::getrandom(&mut b).ok().map(|()| b)
}

impl Http {
    fn routed_cluster_may_signal(&self, cfg: &Config) -> bool {
        let cluster = host::property(&["xds", "cluster_name"]);
        cfg.cluster_may_signal(cluster.as_deref())
    }

    fn record(&self, rec: Record) {
        for (c, n) in rec.counters {
            self.metrics.add(c, n);
        }
        for (level, msg) in rec.logs {
            match level {
                Level::Info => log::info!("{msg}"),
                Level::Debug => log::debug!("{msg}"),
            }
        }
    }

    fn fail(&self, what: &str) {
        self.metrics.add(Counter::InternalError, 1);
        log::warn!("session_guard: host call failed: {what}");
    }

    fn apply_request(&self, e: RequestEdits) {
        let t = MapType::HttpRequestHeaders;
        let mut ok = true;
        if let Some(p) = &e.path {
            ok &= host::replace_header(t, ":path", p).is_ok();
        }
        if let Some(r) = &e.referer {
            ok &= host::replace_header(t, "referer", r).is_ok();
        }
        if let Some(list) = &e.cookies {
            match list.as_slice() {
                [] => ok &= host::remove_header(t, "cookie").is_ok(),
                [one] => ok &= host::replace_header(t, "cookie", one).is_ok(),
                several => {
                    ok &= host::remove_header(t, "cookie").is_ok();
                    for v in several {
                        ok &= host::add_header(t, "cookie", v).is_ok();
                    }
                }
            }
        }
        for name in &e.remove {
            ok &= host::remove_header(t, name).is_ok();
        }
        for (name, value) in &e.set {
            ok &= host::replace_header(t, name, value.as_bytes()).is_ok();
        }
        if !ok {
            self.fail("request header edit");
        }
    }

    fn apply_response(&self, e: ResponseEdits) {
        let t = MapType::HttpResponseHeaders;
        let mut ok = true;
        for name in &e.remove {
            ok &= host::remove_header(t, name).is_ok();
        }
        match &e.set_cookies {
            SetCookies::Unchanged => {}
            SetCookies::Append(c) => {
                ok &= host::add_header(t, "set-cookie", c.as_bytes()).is_ok();
            }
            SetCookies::Replace(list) => {
                ok &= host::remove_header(t, "set-cookie").is_ok();
                for v in list {
                    ok &= host::add_header(t, "set-cookie", v).is_ok();
                }
            }
        }
        if let Some(cc) = &e.cache_control {
            ok &= host::replace_header(t, "cache-control", cc).is_ok();
        }
        if !ok {
            self.fail("response header edit");
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let Some(cfg) = self.config.clone() else {
            return Action::Continue;
        };
        let headers = match host::header_map(MapType::HttpRequestHeaders) {
            Ok(h) => h,
            Err(_) => {
                self.fail("read request headers");
                return Action::Continue;
            }
        };
        let mut view = RequestView {
            debug_logs: log::log_enabled!(log::Level::Debug),
            now: host::now_s(),
            ..Default::default()
        };
        for (name, value) in &headers {
            match name.as_str() {
                ":method" => view.method = value,
                ":path" => view.path = Some(value),
                "referer" => view.referer = Some(value),
                "cookie" => view.cookies.push(value),
                "x-request-id" => view.request_id = Some(value),
                n => {
                    // `x_session_subject` counts too: some CGI/WSGI/Rack stacks map `_` and `-`
                    // to the same variable, so an underscore twin would reach the app as ours.
                    let ours = [
                        &cfg.upstream.session_header,
                        &cfg.upstream.subject_header,
                        &cfg.upstream.next_session_header,
                    ]
                    .iter()
                    .any(|o| same_header_name(n, o));
                    if ours && !view.spoofed.contains(&n) {
                        view.spoofed.push(n);
                    }
                }
            }
        }
        let decision = policy::decide_request(&cfg, &view, &mut random_id);
        self.record(decision.record);
        let monitor = cfg.mode == Mode::Monitor;
        let mut pending = decision.pending;
        match decision.outcome {
            RequestOutcome::Reply(r) if !monitor => {
                self.pending = None;
                if host::send_local_response(r.status, &r.headers, r.body) {
                    return Action::Pause;
                }
                self.fail("send local response");
                return Action::Continue;
            }
            RequestOutcome::Reply(_) => {}
            RequestOutcome::Forward(e) => {
                if !monitor {
                    self.apply_request(e);
                }
            }
        }
        // The routed cluster as Envoy resolved it before this filter ran. After a stripped
        // path it may be stale (Envoy re-routes when forwarding); the response phase checks
        // trust again on the cluster that actually answered.
        let may_signal =
            cfg.signal.trusted_clusters.is_empty() || self.routed_cluster_may_signal(&cfg);
        if may_signal {
            let mut rec = Record::default();
            let header = policy::grant_signal(&cfg, &mut pending, &mut rec, &mut random_id);
            self.record(rec);
            if let (Some((name, value)), false) = (header, monitor) {
                if host::replace_header(MapType::HttpRequestHeaders, &name, value.as_bytes())
                    .is_err()
                {
                    self.fail("request header edit");
                }
            }
        }
        self.pending = Some(pending);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        let (Some(cfg), Some(mut pending)) = (self.config.clone(), self.pending.take()) else {
            return Action::Continue;
        };
        let headers = match host::header_map(MapType::HttpResponseHeaders) {
            Ok(h) => h,
            Err(_) => {
                self.fail("read response headers");
                return Action::Continue;
            }
        };
        let mut view = ResponseView {
            debug_logs: log::log_enabled!(log::Level::Debug),
            now: pending.now,
            ..Default::default()
        };
        for (name, value) in &headers {
            let n = name.as_str();
            if n == "set-cookie" {
                view.set_cookies.push(value);
            } else if n == "cache-control" {
                view.cache_control = Some(match view.cache_control.take() {
                    None => std::borrow::Cow::Borrowed(value.as_slice()),
                    Some(prev) => {
                        let mut joined = prev.into_owned();
                        joined.extend_from_slice(b", ");
                        joined.extend_from_slice(value);
                        std::borrow::Cow::Owned(joined)
                    }
                });
            } else if n == cfg.signal.header {
                view.signals.push(value);
            } else if n == cfg.signal.subject_header {
                view.subjects.push(value);
            }
        }
        if !view.signals.is_empty() && !cfg.signal.trusted_clusters.is_empty() {
            // Trust is decided by the cluster that answered (see on_http_request_headers).
            let trusted = self.routed_cluster_may_signal(&cfg);
            if trusted && pending.next_id.is_none() {
                let mut rec = Record::default();
                // The auth upstream could not bind this ID in advance; the rotation is as safe.
                let _ = policy::grant_signal(&cfg, &mut pending, &mut rec, &mut random_id);
                self.record(rec);
            }
            pending.may_signal = trusted;
        }
        let decision = policy::decide_response(&cfg, &pending, &view);
        self.record(decision.record);
        if cfg.mode == Mode::Enforce {
            self.apply_response(decision.edits);
        }
        Action::Continue
    }
}
