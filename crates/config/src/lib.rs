//! Configuration: the contract's JSON, parsed once into a validated, immutable [`Config`].
//!
//! Every object rejects unknown fields. Errors name the field (`cookie.same_site`) and the
//! problem, and never contain a secret.
//!
//! Three steps, one file each: [`json`] reads the JSON into raw sections (shapes and types),
//! [`validate`] checks each section and the cross-field rules, and this file holds the
//! validated types and [`parse`], which runs both. The modules read top-down: `validate`
//! uses `validate_sessions` (the session sections), both use `fields` (shared field rules). The main crate re-exports this crate as
//! `session_guard::config`.

mod dbsc;
mod exempt;
mod fields;
mod host;
mod json;
mod validate;
mod validate_sessions;

pub use dbsc::{DbscConfig, Endpoint, Offer};
pub use host::host_scope;
pub mod cookie_names;
pub mod denylist;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// Framework session-cookie names that must never travel in URLs. Generic words such as
/// `session_id` or `sid` are deliberately absent: they are ordinary parameters elsewhere
/// (a payment provider's checkout `session_id`), and stripping them would break those apps.
pub const DEFAULT_URL_PARAMS: &[&str] = &[
    "jsessionid",
    "phpsessid",
    "asp.net_sessionid",
    "aspsessionid",
    "connect.sid",
    "laravel_session",
    "sessionid",
    "_session_id",
    "cfid",
    "cftoken",
];

/// The apps' own session cookies bound to the mesh session by default (`app_cookies.names`):
/// framework session cookies only, never CSRF or preference cookies. Compared ASCII
/// case-insensitively.
pub const DEFAULT_APP_COOKIES: &[&str] = &[
    "JSESSIONID",
    "PHPSESSID",
    "ASP.NET_SessionId",
    "connect.sid",
    "laravel_session",
    "sessionid",
    "_session_id",
    "CFID",
    "CFTOKEN",
    "rack.session",
    "express.sid",
    "koa.sess",
    "ci_session",
    // ASP.NET Core, Play, Beaker (Pylons, Pyramid), CakePHP, Vert.x Web, Zope.
    ".AspNetCore.Session",
    "PLAY_SESSION",
    "beaker.session.id",
    "CAKEPHP",
    "vertx-web.session",
    "_ZopeId",
];

/// Upper bound on a subject, from the contract.
pub const MAX_SUBJECT_LEN: usize = 256;
/// Upper bound on each revocation list (`revoke.subjects`, `revoke.sessions`): a plugin's
/// configuration travels to every proxy, and is parsed by each VM.
pub const MAX_REVOKED: usize = 10_000;
/// Upper bound on a mesh cookie value, from the contract.
pub const MAX_COOKIE_VALUE_LEN: usize = 4096;

/// Key material. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Clone)]
pub struct Key {
    pub id: String,
    pub secret: Secret,
    /// HMAC state after absorbing the key: cloning it saves two SHA-256 blocks per MAC.
    mac: Option<Hmac<Sha256>>,
}

impl Key {
    pub fn new(id: impl Into<String>, secret: Secret) -> Self {
        let mac = Hmac::<Sha256>::new_from_slice(secret.expose()).ok();
        Key {
            id: id.into(),
            secret,
            mac,
        }
    }

    /// A fresh MAC keyed with this key.
    pub fn mac(&self) -> Option<Hmac<Sha256>> {
        self.mac.clone()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("secret", &self.secret)
            .finish()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.secret == other.secret
    }
}

impl Eq for Key {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Monitor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlAction {
    Strip,
    Redirect,
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    pub name: String,
    pub same_site: SameSite,
    pub secure: bool,
    pub max_age_s: u64,
    pub idle_timeout_s: u64,
    pub anonymous: Anonymous,
}

/// `cookie.anonymous`: who gets a pre-login session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anonymous {
    /// `true`: any request without a valid session (committed per the commit rule).
    Always,
    /// `"navigate"`: document navigations, and responses that set a cookie or signal.
    Navigate,
    /// `false`: sessions exist only after a login signal (or to hold an app cookie binding).
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlConfig {
    /// Lowercase ASCII names; compared case-insensitively with decoded parameter names.
    pub params: Vec<String>,
    pub action: UrlAction,
    /// `url.query_semicolon`: whether `;` separates query parameters as well as `&`.
    pub query_semicolon: bool,
}

/// `cookie.scope`: what a session is valid for, covered by its MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `"host"`: the request's `:authority`, lowercased, without port.
    Host,
    /// Any other string: shared by the hosts of one plugin instance, compared as given.
    Fixed(String),
    /// `""`: a session is valid for every host.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCookiesConfig {
    /// `app_cookies.names` then `app_cookies.extra_names`: lowercase ASCII, without
    /// duplicates, never the mesh cookie. Empty: binding is off.
    pub names: Vec<String>,
    /// `app_cookies.adopt_until`: unix seconds.
    pub adopt_until: Option<u64>,
}

/// Revocation lists, read through [`Config::revoked_session`] and
/// [`Config::subject_revoked_before`].
///
/// Neither is a `HashMap`/`HashSet`: those add about 18 KiB of wasm (SipHash, random keys,
/// two table instantiations). The subjects stay in the JSON reader's own map (a `BTreeMap`
/// already in the binary; every value checked to be a `u64`), and the sessions are a sorted
/// `Vec` searched by bisection: O(log n) either way.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RevokeConfig {
    /// `revoke.not_before`, unix seconds: every session issued before is invalid.
    pub not_before: Option<u64>,
    /// `revoke.subjects`: subject -> unix seconds (each value a `u64`).
    subjects: serde_json::Map<String, serde_json::Value>,
    /// `revoke.sessions`: the 8-byte session hashes log lines print, big-endian, sorted.
    sessions: Vec<u64>,
}

impl RevokeConfig {
    /// `sessions` in any order: sorted here, for [`Config::revoked_session`]'s bisection.
    fn new(
        not_before: Option<u64>,
        subjects: serde_json::Map<String, serde_json::Value>,
        mut sessions: Vec<u64>,
    ) -> Self {
        heapsort(&mut sessions);
        RevokeConfig {
            not_before,
            subjects,
            sessions,
        }
    }
}

/// Sorts in place, O(n log n). `sort_unstable` would add about 4 KiB of wasm for a list
/// sorted once, at configuration time.
fn heapsort(v: &mut [u64]) {
    for root in (0..v.len() / 2).rev() {
        sift_down(v, root, v.len());
    }
    for end in (1..v.len()).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

/// Restores the max-heap below `root` within `v[..end]`.
fn sift_down(v: &mut [u64], mut root: usize, end: usize) {
    loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && v.get(child) < v.get(child + 1) {
            child += 1;
        }
        if v.get(root) >= v.get(child) {
            return;
        }
        v.swap(root, child);
        root = child;
    }
}

/// `detect.client_change`: what a session seen from another client means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientChange {
    Count,
    End,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectConfig {
    pub client_change: ClientChange,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalConfig {
    pub header: String,
    pub subject_header: String,
    pub trusted_clusters: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub session_header: String,
    pub subject_header: String,
    pub next_session_header: String,
}

/// The validated configuration shared, read-only, by every HTTP context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub mode: Mode,
    /// Never empty: the first key signs, all verify.
    pub keys: Vec<Key>,
    pub cookie: CookieConfig,
    pub url: UrlConfig,
    pub signal: SignalConfig,
    pub upstream: UpstreamConfig,
    /// `cookie.scope` (here rather than in [`CookieConfig`], which `Set-Cookie` rendering
    /// takes whole and does not need it).
    pub scope: Scope,
    /// `cookie.legacy_hosts`: hosts (as [`Scope::Host`] reads them) on which 0.1.0 cookies,
    /// which carry no scope, still verify until they expire.
    pub legacy_hosts: Vec<String>,
    pub app_cookies: AppCookiesConfig,
    pub revoke: RevokeConfig,
    pub detect: DetectConfig,
    /// `observe.filter_state`: publish the session hash and decision as filter state.
    pub filter_state: bool,
    /// `exempt.paths`: path prefixes where nothing is minted or re-issued ([`Config::exempt`]).
    pub exempt_paths: Vec<String>,
    /// `dbsc`: device-bound sessions (off by default).
    pub dbsc: DbscConfig,
}

impl Config {
    pub fn signing_key(&self) -> Option<&Key> {
        self.keys.first()
    }
    /// The start-up line's fields: `mode=... keys=[...] (signing: ...) cookie=...
    /// url.action=... trusted_clusters=[...]`. Never a secret.
    pub fn summary(&self) -> String {
        let ids = self.key_ids();
        format!(
            "mode={} keys=[{}] (signing: {}) cookie={} url.action={} trusted_clusters=[{}]",
            match self.mode {
                Mode::Enforce => "enforce",
                Mode::Monitor => "monitor",
            },
            ids.join(","),
            ids.first().copied().unwrap_or("-"),
            self.cookie.name,
            match self.url.action {
                UrlAction::Strip => "strip",
                UrlAction::Redirect => "redirect",
                UrlAction::Reject => "reject",
            },
            self.signal.trusted_clusters.join(","),
        ) + if self.dbsc.enabled { " dbsc=on" } else { "" }
    }

    /// A warning for a configuration that is accepted but weaker than it looks: a cookie name
    /// without the `__Host-` prefix can be set by a sibling host (with an app cookie bound to
    /// it), which defeats app cookie binding for a victim without a mesh session. Not refused:
    /// a fixed `cookie.scope` shared by several hosts needs such a name (docs/app-cookies.md).
    pub fn warning(&self) -> Option<&'static str> {
        if !self.cookie.name.starts_with("__Host-") {
            return Some("cookie.name has no __Host- prefix: a sibling host can set it, with an app cookie bound to it");
        }
        // Chrome allows 6 signings per 9 minutes per site and refreshes 120 s before a ticket
        // expires: one host alone needs ticket_ttl_s >= 120 + 540 / 6 (docs/dbsc.md).
        (self.dbsc.enabled && self.dbsc.ticket_ttl_s < 210).then_some(
            "dbsc.ticket_ttl_s under 210 s exceeds Chrome's signing quota for a continuously active user (requests go out unproven)",
        )
    }

    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }
    /// Whether responses from `cluster` may carry session signals.
    pub fn cluster_may_signal(&self, cluster: Option<&[u8]>) -> bool {
        if self.signal.trusted_clusters.is_empty() {
            return true;
        }
        match cluster {
            Some(c) => self
                .signal
                .trusted_clusters
                .iter()
                .any(|t| t.as_bytes() == c),
            None => false,
        }
    }
    /// Whether apps' own session cookies are bound to the mesh session.
    pub fn app_cookies_enabled(&self) -> bool {
        !self.app_cookies.names.is_empty()
    }
    /// Whether `revoke.sessions` lists any session.
    pub fn revokes_sessions(&self) -> bool {
        !self.revoke.sessions.is_empty()
    }
    /// Whether a session, named by its log hash, is in `revoke.sessions`.
    pub fn revoked_session(&self, hash: &[u8; 8]) -> bool {
        self.revoke
            .sessions
            .binary_search(&u64::from_be_bytes(*hash))
            .is_ok()
    }
    /// Whether `path` (a request's `:path`, query included) is under one of `exempt.paths`:
    /// see [`exempt::matches`].
    pub fn exempt(&self, path: &[u8]) -> bool {
        !self.exempt_paths.is_empty() && exempt::matches(&self.exempt_paths, path)
    }
    /// The time before which `subject`'s sessions are invalid, from `revoke.subjects`.
    pub fn subject_revoked_before(&self, subject: &str) -> Option<u64> {
        self.revoke
            .subjects
            .get(subject)
            .and_then(serde_json::Value::as_u64)
    }
}

/// A configuration error: the field it concerns and what is wrong. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub problem: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// Parses and validates a configuration. `env` reads the VM's environment for `secret_env`.
pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    if json.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ConfigError::new(
            "configuration",
            "is empty; at least `keys` is required",
        ));
    }
    let root: serde_json::Value = serde_json::from_slice(json).map_err(|e| {
        // serde_json's syntax errors carry a position, never a quoted value.
        ConfigError::new(
            "configuration",
            format!(
                "is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    validate::config(json::read(&root)?, env)
}

/// RFC 7230 `tchar`: header names and cookie names.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_contract;
#[cfg(test)]
mod tests_dbsc;
#[cfg(test)]
mod tests_exempt;
