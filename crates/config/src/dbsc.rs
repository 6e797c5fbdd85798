//! `dbsc`: Device Bound Session Credentials served by the filter (docs/dbsc.md).

use super::json::RawDbsc;
use super::{ConfigError, Mode};

/// Shortest ticket: Chrome refreshes a bound cookie proactively once it has 120 s or less
/// left, so a shorter lifetime would make every request wait for a refresh.
pub const MIN_TICKET_TTL_S: u64 = 180;
pub const MAX_TICKET_TTL_S: u64 = 86_400;
const MAX_PATH_LEN: usize = 128;

/// When `Secure-Session-Registration` is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// On login and privilege responses.
    Login,
    /// Also on any response of a valid, unbound, authenticated session.
    Authenticated,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbscConfig {
    pub enabled: bool,
    /// `<path>/start`, the registration endpoint.
    pub start_path: String,
    /// `<path>/refresh`.
    pub refresh_path: String,
    pub ticket_ttl_s: u64,
    pub offer: Offer,
    pub require_bound_after_s: Option<u64>,
    /// `dbsc.mode: "monitor"` (or the global monitor mode): a request without a valid ticket
    /// is counted, never treated as unproven.
    pub monitor: bool,
}

impl Default for DbscConfig {
    fn default() -> Self {
        DbscConfig {
            enabled: false,
            start_path: "/.session-guard/dbsc/start".into(),
            refresh_path: "/.session-guard/dbsc/refresh".into(),
            ticket_ttl_s: 900,
            offer: Offer::Login,
            require_bound_after_s: None,
            monitor: false,
        }
    }
}

/// Validates the section; `mode` is the global mode (monitor implies DBSC monitor).
pub(super) fn dbsc(raw: Option<RawDbsc>, mode: Mode) -> Result<DbscConfig, ConfigError> {
    let Some(r) = raw else {
        return Ok(DbscConfig::default());
    };
    let path = r.path.unwrap_or_else(|| "/.session-guard/dbsc".into());
    if !valid_path(&path) {
        return Err(ConfigError::new(
            "dbsc.path",
            "must be a path: start with /, not end with /, at most 128 visible ASCII \
             characters, without .., %, ?, # or \\",
        ));
    }
    let ticket_ttl_s = r.ticket_ttl_s.unwrap_or(900);
    if !(MIN_TICKET_TTL_S..=MAX_TICKET_TTL_S).contains(&ticket_ttl_s) {
        return Err(ConfigError::new(
            "dbsc.ticket_ttl_s",
            "must be 180 to 86400 seconds (Chrome refreshes a bound cookie 120 s before it expires)",
        ));
    }
    if r.require_bound_after_s == Some(0) {
        return Err(ConfigError::new(
            "dbsc.require_bound_after_s",
            "must be at least 1 second",
        ));
    }
    let offer = super::fields::choice(
        "dbsc.offer",
        r.offer.as_deref(),
        &[
            ("login", Offer::Login),
            ("authenticated", Offer::Authenticated),
        ],
        "must be \"login\" or \"authenticated\"",
    )?;
    let dbsc_mode = super::fields::choice(
        "dbsc.mode",
        r.mode.as_deref(),
        &[("enforce", Mode::Enforce), ("monitor", Mode::Monitor)],
        "must be \"enforce\" or \"monitor\"",
    )?;
    Ok(DbscConfig {
        enabled: r.enabled.unwrap_or(false),
        start_path: format!("{path}/start"),
        refresh_path: format!("{path}/refresh"),
        ticket_ttl_s,
        offer,
        require_bound_after_s: r.require_bound_after_s,
        monitor: mode == Mode::Monitor || dbsc_mode == Mode::Monitor,
    })
}

fn valid_path(p: &str) -> bool {
    let b = p.as_bytes();
    p.starts_with('/')
        && !p.ends_with('/')
        && b.len() <= MAX_PATH_LEN
        && b.iter()
            .all(|&c| c.is_ascii_graphic() && !matches!(c, b'%' | b'?' | b'#' | b'\\'))
        && !b.windows(2).any(|w| w == b"..")
}

impl DbscConfig {
    /// Which endpoint `path` (`:path`, query ignored) names, if DBSC is on.
    pub fn endpoint(&self, path: &[u8]) -> Option<Endpoint> {
        if !self.enabled {
            return None;
        }
        let end = path.iter().position(|&b| b == b'?').unwrap_or(path.len());
        let path = path.get(..end)?;
        if path == self.start_path.as_bytes() {
            Some(Endpoint::Start)
        } else if path == self.refresh_path.as_bytes() {
            Some(Endpoint::Refresh)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Start,
    Refresh,
}
