//! The filter on top of a [`Host`]: read headers once, ask `policy`, write the edits, count,
//! log. Generic over the host, so it runs natively against `hostapi::fake::FakeHost`; the
//! Proxy-Wasm contexts (`crates/wasm/src/glue.rs`) only forward Envoy's callbacks here.
//!
//! Every host call may fail (the hosts return errors where the SDK would panic): a failure
//! is counted as `internal_error` and the request continues.

use crate::config::{self, Config, Mode};
use crate::hostapi::{Host, LogLevel, Map};
use crate::metrics::Counter;
use crate::policy::{
    self, Level, Pending, Record, RequestEdits, RequestOutcome, RequestView, ResponseEdits,
    ResponseView, SetCookies,
};
use crate::set_cookie;
use crate::token;
use crate::wire::HeaderMap;
use std::borrow::Cow;
use std::sync::Arc;

#[cfg(feature = "fault-injection")]
pub mod fault;

mod denylist;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The property naming the upstream cluster of the route.
const CLUSTER: &[&str] = &["xds", "cluster_name"];

/// What Envoy should do with the stream after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// A local reply was sent.
    Pause,
}

/// Metric ids by `Counter::index`; `None` where the host refused to define one.
#[derive(Debug, Default)]
pub struct Metrics(Vec<Option<u32>>);

impl Metrics {
    fn define<H: Host>(host: &H) -> Self {
        Metrics(
            Counter::ALL
                .iter()
                .map(|c| host.define_counter(c.name()))
                .collect(),
        )
    }

    fn add<H: Host>(&self, host: &H, c: Counter, n: u64) {
        if let Some(Some(id)) = self.0.get(c.index()) {
            let _ = host.increment_counter(*id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

/// The plugin: its configuration and counters, shared by its streams (`Arc`: the native
/// build creates streams on every Envoy worker thread from one configuration).
#[derive(Debug, Default)]
pub struct Root {
    config: Option<Arc<Config>>,
    metrics: Arc<Metrics>,
}

impl Root {
    /// Reads and checks the configuration; `false` makes Envoy refuse the plugin. `env` reads
    /// the VM's environment (`secret_env`).
    #[cold]
    pub fn configure<H: Host>(&mut self, host: &H, env: &dyn Fn(&str) -> Option<String>) -> bool {
        #[cfg(feature = "fault-injection")]
        fault::at_start(env);
        let bytes = host.plugin_configuration().unwrap_or_default();
        let cfg = match config::parse(&bytes, env) {
            Ok(cfg) => cfg,
            Err(e) => {
                let msg = format_args!("session_guard: invalid configuration: {e}");
                host.log(LogLevel::Error, msg);
                return false;
            }
        };
        if self.metrics.0.is_empty() {
            self.metrics = Arc::new(Metrics::define(host));
        }
        // Built in the configuration crate (optimized for size: cold code).
        let summary = cfg.summary();
        host.log(
            LogLevel::Info,
            format_args!("session_guard {VERSION}: configured {summary}"),
        );
        if let Some(w) = cfg.warning() {
            host.log(LogLevel::Warn, format_args!("session_guard: {w}"));
        }
        self.config = Some(Arc::new(cfg));
        true
    }

    pub fn stream(&self) -> Stream {
        Stream {
            config: self.config.clone(),
            metrics: Arc::clone(&self.metrics),
            pending: None,
            published: None,
        }
    }
}

/// One HTTP stream.
#[derive(Debug)]
pub struct Stream {
    /// `None` only if Envoy created a stream despite a refused configuration: pass through.
    config: Option<Arc<Config>>,
    metrics: Arc<Metrics>,
    pending: Option<Pending>,
    /// What [`Stream::publish`] last wrote.
    published: Option<(&'static str, Option<[u8; 8]>)>,
}

fn random_id<H: Host>(host: &H) -> Option<[u8; crate::token::ID_LEN]> {
    let mut b = [0u8; crate::token::ID_LEN];
    host.random_bytes(&mut b).then_some(b)
}

impl Stream {
    pub fn on_request_headers<H: Host>(&mut self, host: &H) -> Flow {
        let Some(cfg) = self.config.clone() else {
            return Flow::Continue;
        };
        let Ok(headers) = host.header_map(Map::Request) else {
            self.fail(host, "read request headers");
            return Flow::Continue;
        };
        #[cfg(feature = "fault-injection")]
        fault::at_request(&headers);
        let debug = host.log_enabled(LogLevel::Debug);
        let mut view = request_view(&cfg, &headers, debug, host.now_s());
        let now = view.now;
        let denylist = |hash: &[u8; 8]| denylist::logged_out(host, hash, now);
        view.denylist = policy::Denylist(Some(&denylist));
        let mut rng = || random_id(host);
        let decision = policy::decide_request(&cfg, &view, &mut rng);
        self.record(host, decision.record);
        // Monitor mode decides, counts and logs everything, and writes nothing.
        let monitor = cfg.mode == Mode::Monitor;
        let mut pending = decision.pending;
        self.publish(host, pending.decision, pending.session_hash);
        match decision.outcome {
            RequestOutcome::Reply(r) if !monitor => {
                self.pending = None;
                if host.send_local_response(r.status, &r.headers, &r.body) {
                    return Flow::Pause;
                }
                self.fail(host, "send local response");
                return Flow::Continue;
            }
            RequestOutcome::Reply(_) => {}
            // The filter's own endpoints (DBSC) are answered in every mode: forwarded, they
            // would reach an app that does not know them.
            RequestOutcome::Answer(r) => {
                self.pending = None;
                if host.send_local_response(r.status, &r.headers, &r.body) {
                    return Flow::Pause;
                }
                self.fail(host, "send local response");
                return Flow::Continue;
            }
            RequestOutcome::Forward(e) if !monitor => self.apply_request(host, &e),
            RequestOutcome::Forward(_) => {}
        }
        let mut rec = Record::default();
        let routed = || host.property(CLUSTER);
        let next = policy::trust_on_request(&cfg, &mut pending, routed, &mut rec, &mut rng);
        self.record(host, rec);
        if let (Some((name, value)), false) = (next, monitor) {
            if host
                .replace_header(Map::Request, &name, value.as_bytes())
                .is_err()
            {
                self.fail(host, "request header edit");
            }
        }
        self.pending = Some(pending);
        Flow::Continue
    }

    pub fn on_response_headers<H: Host>(&mut self, host: &H) -> Flow {
        let (Some(cfg), Some(mut pending)) = (self.config.clone(), self.pending.take()) else {
            return Flow::Continue;
        };
        let Ok(headers) = host.header_map(Map::Response) else {
            self.fail(host, "read response headers");
            return Flow::Continue;
        };
        let debug = host.log_enabled(LogLevel::Debug);
        let view = response_view(&cfg, &headers, debug, pending.now);
        let mut rec = Record::default();
        let answering = || host.property(CLUSTER);
        let signalled = !view.signals.is_empty();
        let mut rng = || random_id(host);
        policy::trust_on_response(&cfg, &mut pending, signalled, answering, &mut rec, &mut rng);
        self.record(host, rec);
        let decision = policy::decide_response(&cfg, &pending, &view);
        self.record(host, decision.record);
        self.publish(host, decision.decision, decision.session_hash);
        if cfg.mode == Mode::Enforce {
            self.apply_response(host, &decision.edits);
            if decision.decision == "logout" {
                self.deny(host, &cfg, &pending);
            }
        }
        Flow::Continue
    }

    /// The session a logout ended is recorded in this proxy's denylist until its absolute
    /// expiry (`cookie.max_age_s` after it was issued).
    #[inline(never)]
    fn deny<H: Host>(&self, host: &H, cfg: &Config, p: &Pending) {
        let Some(s) = &p.session else {
            return;
        };
        let hash = p.session_hash.unwrap_or_else(|| token::session_hash(&s.id));
        let expiry = s.issued_at.saturating_add(cfg.cookie.max_age_s);
        let outcome = denylist::record(host, &hash, expiry, p.now);
        self.metrics.add(host, outcome, 1);
        if outcome != Counter::LogoutRecorded {
            let session = token::hex16(&hash);
            let msg = format_args!("logout not recorded (denylist full or unavailable): the session stays valid until its absolute expiry session={session}");
            host.log(LogLevel::Info, msg);
        }
    }

    /// Trailers carry none of the mesh's names: a signal or subject in response trailers (never
    /// honoured) does not reach the client, a session header in request trailers does not
    /// reach an upstream. Envoy calls this only when there are trailers; the names are removed
    /// without reading the map (removing an absent name is a no-op): the smallest code for a
    /// rare case. Monitor mode leaves them.
    pub fn on_trailers<H: Host>(&mut self, host: &H, map: Map) -> Flow {
        let Some(cfg) = self.config.clone() else {
            return Flow::Continue;
        };
        if cfg.mode != Mode::Enforce {
            return Flow::Continue;
        }
        let names = match map {
            Map::ResponseTrailers => [
                &cfg.signal.header,
                &cfg.signal.subject_header,
                &cfg.signal.header,
            ],
            _ => [
                &cfg.upstream.session_header,
                &cfg.upstream.subject_header,
                &cfg.upstream.next_session_header,
            ],
        };
        if !names.iter().all(|n| host.remove_header(map, n).is_ok()) {
            self.fail(host, "trailer edit");
        }
        Flow::Continue
    }

    fn record<H: Host>(&self, host: &H, rec: Record) {
        for (c, n) in rec.counters {
            self.metrics.add(host, c, n);
        }
        for (level, msg) in rec.logs {
            let level = match level {
                Level::Info => LogLevel::Info,
                Level::Debug => LogLevel::Debug,
            };
            host.log(level, format_args!("{msg}"));
        }
    }

    /// Filter state for access logs and traces (`wasm.session_guard.session`, `.decision`):
    /// the session's hash (never its ID) and one word. Written only when it changes.
    fn publish<H: Host>(&mut self, host: &H, decision: &'static str, hash: Option<[u8; 8]>) {
        let on = self.config.as_ref().is_some_and(|c| c.filter_state);
        if !on || self.published == Some((decision, hash)) {
            return;
        }
        let mut ok = true;
        if self.published.map(|p| p.1) != Some(hash) {
            let value = hash.map_or_else(|| "-".to_string(), |h| token::hex16(&h));
            ok &= host
                .set_property("session_guard.session", value.as_bytes())
                .is_ok();
        }
        if self.published.map(|p| p.0) != Some(decision) {
            ok &= host
                .set_property("session_guard.decision", decision.as_bytes())
                .is_ok();
        }
        self.published = Some((decision, hash));
        if !ok {
            self.fail(host, "set filter state");
        }
    }

    #[cold]
    fn fail<H: Host>(&self, host: &H, what: &str) {
        self.metrics.add(host, Counter::InternalError, 1);
        let msg = format_args!("session_guard: host call failed: {what}");
        host.log(LogLevel::Warn, msg);
    }

    fn apply_request<H: Host>(&self, host: &H, e: &RequestEdits) {
        let t = Map::Request;
        let mut ok = true;
        if let Some(p) = &e.path {
            ok &= host.replace_header(t, ":path", p).is_ok();
        }
        if let Some(r) = &e.referer {
            ok &= host.replace_header(t, "referer", r).is_ok();
        }
        if let Some(list) = &e.cookies {
            match list.as_slice() {
                [] => ok &= host.remove_header(t, "cookie").is_ok(),
                [one] => ok &= host.replace_header(t, "cookie", one).is_ok(),
                several => {
                    ok &= host.remove_header(t, "cookie").is_ok();
                    for v in several {
                        ok &= host.add_header(t, "cookie", v).is_ok();
                    }
                }
            }
        }
        for name in &e.remove {
            ok &= host.remove_header(t, name).is_ok();
        }
        for (name, value) in &e.set {
            ok &= host.replace_header(t, name, value.as_bytes()).is_ok();
        }
        if !ok {
            self.fail(host, "request header edit");
        }
    }

    fn apply_response<H: Host>(&self, host: &H, e: &ResponseEdits) {
        let t = Map::Response;
        let mut ok = true;
        for name in &e.remove {
            ok &= host.remove_header(t, name).is_ok();
        }
        match &e.set_cookies {
            SetCookies::Unchanged => {}
            SetCookies::Append(c) => {
                ok &= host.add_header(t, "set-cookie", c.as_bytes()).is_ok();
            }
            SetCookies::Replace(list) => {
                ok &= host.remove_header(t, "set-cookie").is_ok();
                for v in list {
                    ok &= host.add_header(t, "set-cookie", v).is_ok();
                }
            }
        }
        if let Some(cc) = &e.cache_control {
            ok &= host.replace_header(t, "cache-control", cc).is_ok();
        }
        for name in &e.no_store {
            ok &= host.replace_header(t, name, b"no-store").is_ok();
        }
        for (name, value) in &e.add {
            ok &= host.add_header(t, name, value.as_bytes()).is_ok();
        }
        if !ok {
            self.fail(host, "response header edit");
        }
    }
}

/// Header names equal once `_` and `-` are treated alike (names arrive lowercase).
fn same_header_name(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| x == y || (matches!(x, b'_' | b'-') && matches!(y, b'_' | b'-')))
}

/// The request as `policy` sees it, from one read of the header map.
fn request_view<'a>(
    cfg: &Config,
    headers: &'a HeaderMap,
    debug: bool,
    now: u64,
) -> RequestView<'a> {
    let mut view = RequestView {
        debug_logs: debug,
        now,
        ..Default::default()
    };
    for (name, value) in headers.iter() {
        match name {
            ":method" => view.method = value,
            ":authority" => view.authority = Some(value),
            "user-agent" => view.user_agent = Some(value),
            ":path" => view.path = Some(value),
            "referer" => view.referer = Some(value),
            "cookie" => view.cookies.push(value),
            "x-request-id" => view.request_id = Some(value),
            "sec-fetch-mode" => view.sec_fetch_mode = Some(value),
            "accept" => view.accept = Some(value),
            "access-control-request-method" => view.cors_request_method = true,
            "secure-session-response" if view.dbsc_response.is_none() => {
                view.dbsc_response = Some(value)
            }
            "sec-secure-session-id" if view.dbsc_session_id.is_none() => {
                view.dbsc_session_id = Some(value)
            }
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
    view
}

/// The response as `policy` sees it; `now` is the request's clock reading.
fn response_view<'a>(
    cfg: &Config,
    headers: &'a HeaderMap,
    debug: bool,
    now: u64,
) -> ResponseView<'a> {
    let mut view = ResponseView {
        debug_logs: debug,
        now,
        ..Default::default()
    };
    for (n, value) in headers.iter() {
        if n == "set-cookie" {
            view.set_cookies.push(value);
        } else if n == "cache-control" {
            view.cache_control = Some(match view.cache_control.take() {
                None => Cow::Borrowed(value),
                Some(prev) => {
                    let mut joined = prev.into_owned();
                    joined.extend_from_slice(b", ");
                    joined.extend_from_slice(value);
                    Cow::Owned(joined)
                }
            });
        } else if set_cookie::is_targeted_cache_field(n) {
            if !view.targeted_cache.iter().any(|(m, _)| *m == n) {
                view.targeted_cache.push((n, value));
            }
        } else if n == ":status" {
            view.status = Some(value);
        } else if n == cfg.signal.header {
            view.signals.push(value);
        } else if n == cfg.signal.subject_header {
            view.subjects.push(value);
        }
    }
    view
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests_dbsc;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests_denylist;
