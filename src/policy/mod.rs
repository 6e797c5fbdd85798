//! Decisions, from a snapshot of headers to a list of edits. No host calls here: the
//! `filter` module reads headers once, asks this module, and writes the edits.
//!
//! The security order is written once, as a list of named steps, in
//! [`decide_request`] (`request.rs`) and [`decide_response`] (`response.rs`); each step is a
//! plain function tested on its own. The mesh cookie's validation is `session.rs`, the
//! trusted-cluster rule `trust.rs`, counting and logging `record.rs`.

mod app_cookies;
mod cache;
mod dbsc;
mod proof;
pub use crate::config::denylist;
mod record;
mod request;
mod response;
mod scope;
mod session;
mod trust;

pub use app_cookies::{bind_response, filter_request, AppCookie};
pub use cache::{commit, partial, shared_cacheable};
pub use proof::{prove, Proven, Ticket};
pub use record::{Level, Record};
pub use request::{
    cookie_header_without_mesh_cookie, decide_request, exempt_path, grant_signal, mint, navigation,
    scrub_referer, strip_spoofed, upstream_headers, url_defense, who_mints, Mints, UrlStep,
};
pub use response::{
    apply_signal, cache_headers, decide_response, harden_upstream_cookies, mesh_set_cookie,
    parse_signal, signal_headers, trust_signal, MeshCookie, Signal,
};
pub use scope::{host_scope, request_scope};
pub use session::{adopt_session, verify_mesh_cookie, CookieCheck, Ctx};
pub use trust::{cluster_trusted, trust_on_request, trust_on_response};

use crate::metrics::Counter;
use crate::token::{self, Invalid, Session, SessionId};

/// What a request looks like to the filter: borrowed header values, read once. `Debug` prints
/// no value (cookies, the DBSC proof and identifier are credentials).
#[derive(Default)]
pub struct RequestView<'a> {
    /// Build debug log lines (see [`Record::debug`]).
    pub debug_logs: bool,
    pub method: &'a [u8],
    pub path: Option<&'a [u8]>,
    pub referer: Option<&'a [u8]>,
    pub cookies: Vec<&'a [u8]>,
    /// Names of the mesh's upstream headers that the client sent itself.
    pub spoofed: Vec<&'a str>,
    /// Envoy's `x-request-id`, for log lines.
    pub request_id: Option<&'a [u8]>,
    /// `:authority`, for `cookie.scope: "host"`.
    pub authority: Option<&'a [u8]>,
    /// `User-Agent`, for the client fingerprint (`detect.client_change`).
    pub user_agent: Option<&'a [u8]>,
    /// `Sec-Fetch-Mode` and `Accept`, for `cookie.anonymous: "navigate"`.
    pub sec_fetch_mode: Option<&'a [u8]>,
    pub accept: Option<&'a [u8]>,
    /// Whether `Access-Control-Request-Method` is present (with `OPTIONS`: a CORS preflight).
    pub cors_request_method: bool,
    /// `Secure-Session-Response` (the DBSC proof, a JWT) and `Sec-Secure-Session-Id`: read only
    /// on the DBSC endpoints.
    pub dbsc_response: Option<&'a [u8]>,
    pub dbsc_session_id: Option<&'a [u8]>,
    /// This proxy's logout denylist (`denylist.rs`), asked for a valid session only.
    pub denylist: Denylist<'a>,
    pub now: u64,
}

/// Whether this proxy's logout denylist holds a session (by hash); none: it holds nothing.
#[derive(Default, Clone, Copy)]
pub struct Denylist<'a>(pub Option<&'a HoldsSession<'a>>);

/// Asks the denylist about one session hash.
pub type HoldsSession<'a> = dyn Fn(&[u8; 8]) -> bool + 'a;

impl Denylist<'_> {
    pub fn holds(&self, hash: &[u8; 8]) -> bool {
        self.0.is_some_and(|f| f(hash))
    }
}

impl std::fmt::Debug for Denylist<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Denylist")
    }
}

/// A local response instead of forwarding. `Debug` prints the status and header names only
/// (a DBSC answer carries the mesh cookie and the ticket).
#[derive(Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: std::borrow::Cow<'static, [u8]>,
}

impl std::fmt::Debug for LocalReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| *n).collect();
        f.debug_struct("LocalReply")
            .field("status", &self.status)
            .field("headers", &names)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl std::fmt::Debug for RequestView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestView")
            .field("cookie_headers", &self.cookies.len())
            .field("spoofed", &self.spoofed)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// Header edits on a forwarded request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequestEdits {
    pub path: Option<Vec<u8>>,
    pub referer: Option<Vec<u8>>,
    /// `Some(list)`: the Cookie headers become exactly `list` (empty: no Cookie header).
    pub cookies: Option<Vec<Vec<u8>>>,
    pub remove: Vec<String>,
    pub set: Vec<(String, String)>,
}

/// Why the response must carry the mesh cookie, decided on the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Issue {
    #[default]
    None,
    Minted,
    Reissued,
}

/// What the response phase needs to know about the request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pending {
    pub session: Option<Session>,
    /// `session`'s hash (logs, filter state), computed once on the request; `None` also
    /// when it was not computed (then it is computed where needed).
    pub session_hash: Option<[u8; 8]>,
    pub issue: Issue,
    pub next_id: Option<SessionId>,
    pub may_signal: bool,
    pub request_id: String,
    /// The request's clock reading, reused for the response (one host call less).
    pub now: u64,
    /// The request's scope digest: what a session minted or rotated on this response gets.
    pub scope: [u8; token::TAG_LEN],
    /// SHA-256 of the request's `User-Agent`, when client fingerprints are on.
    pub ua: Option<[u8; 32]>,
    /// App session cookies valid on the request: their bindings follow a rotation.
    pub app_cookies: Vec<AppCookie>,
    /// An ID drawn in advance for a response that binds an app cookie while the request had
    /// no session (`cookie.anonymous: false`).
    pub spare_id: Option<SessionId>,
    /// One word for access logs (filter state `session_guard.decision`).
    pub decision: &'static str,
    /// `cookie.anonymous: "navigate"` and the request is no navigation: a fresh ID is
    /// committed only by a response that sets a cookie (or signals).
    pub navigation_only: bool,
    /// A bound session without a valid ticket (`policy/dbsc.rs`): nothing of it reached the
    /// upstream, and the response binds, re-issues and offers nothing.
    pub unproven: bool,
    /// The device key a rotation keeps: the request's, when it was proven.
    pub device: Option<[u8; token::TAG_LEN]>,
    /// A document navigation (`request::navigation`): where `dbsc.offer: "authenticated"`
    /// offers registration.
    pub navigation: bool,
}

#[derive(Debug)]
pub enum RequestOutcome {
    Reply(LocalReply),
    /// The filter's own endpoints (DBSC): answered in every mode, monitor included.
    Answer(LocalReply),
    Forward(RequestEdits),
}

#[derive(Debug)]
pub struct RequestDecision {
    pub outcome: RequestOutcome,
    pub pending: Pending,
    pub record: Record,
}

/// What a response looks like to the filter.
#[derive(Debug, Default)]
pub struct ResponseView<'a> {
    pub debug_logs: bool,
    /// Every value of the signal header (normally one).
    pub signals: Vec<&'a [u8]>,
    pub subjects: Vec<&'a [u8]>,
    pub set_cookies: Vec<&'a [u8]>,
    /// Every `Cache-Control` value, joined with ", " (one header's worth).
    pub cache_control: Option<std::borrow::Cow<'a, [u8]>>,
    /// Targeted cache fields present (`CDN-Cache-Control`, `Surrogate-Control`, ...): name
    /// and value (the first, for [`shared_cacheable`]).
    pub targeted_cache: Vec<(&'a str, &'a [u8])>,
    /// `:status`, for [`partial`].
    pub status: Option<&'a [u8]>,
    pub now: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetCookies {
    Unchanged,
    /// Add one `Set-Cookie`, keep the upstream's.
    Append(String),
    /// Replace every `Set-Cookie` with these, in order.
    Replace(Vec<Vec<u8>>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseEdits {
    pub remove: Vec<String>,
    pub set_cookies: SetCookies,
    pub cache_control: Option<Vec<u8>>,
    /// Targeted cache fields to set to `no-store`.
    pub no_store: Vec<String>,
    /// Headers to add (`Secure-Session-Registration`).
    pub add: Vec<(&'static str, String)>,
}

#[derive(Debug)]
pub struct ResponseDecision {
    pub edits: ResponseEdits,
    pub record: Record,
    /// For filter state: the decision word and the hash of the session the response leaves.
    pub decision: &'static str,
    pub session_hash: Option<[u8; 8]>,
}

pub fn invalid_counter(reason: Invalid) -> Counter {
    match reason {
        Invalid::Forged => Counter::InvalidForged,
        Invalid::UnknownKey => Counter::InvalidUnknownKey,
        Invalid::Malformed => Counter::InvalidMalformed,
        Invalid::Oversized => Counter::InvalidOversized,
        Invalid::ExpiredAbsolute => Counter::InvalidExpiredAbsolute,
        Invalid::ExpiredIdle => Counter::InvalidExpiredIdle,
        Invalid::WrongScope => Counter::InvalidWrongScope,
        Invalid::Revoked => Counter::InvalidRevoked,
        Invalid::ClientChanged => Counter::ClientChanged,
        Invalid::Unbound => Counter::InvalidUnbound,
    }
}

/// A header value fit for a log line (Envoy's request id), or "-".
#[inline(never)]
fn printable(v: Option<&[u8]>) -> String {
    match v {
        Some(v) if !v.is_empty() && v.len() <= 128 && v.iter().all(|b| b.is_ascii_graphic()) => {
            String::from_utf8_lossy(v).into_owned()
        }
        _ => "-".to_string(),
    }
}

/// A one-way hash of a cookie value: logs never carry the value itself.
#[inline(never)]
fn value_tag(v: &[u8]) -> String {
    token::hex16(&token::value_hash(v))
}

#[inline(never)]
fn tag(id: &SessionId) -> String {
    token::hex16(&token::session_hash(id))
}

#[inline(never)]
fn session_tag(s: Option<&Session>) -> String {
    s.map_or_else(|| "-".to_string(), |s| tag(&s.id))
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]
mod tests;

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]
#[path = "commit_tests.rs"]
mod commit_tests;

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]
#[path = "dbsc_tests.rs"]
mod dbsc_tests;

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]
#[path = "dbsc_steady_tests.rs"]
mod dbsc_steady_tests;
