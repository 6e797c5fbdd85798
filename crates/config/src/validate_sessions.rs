//! Validation of the session sections added in 0.2.0: `cookie.scope`, `cookie.legacy_hosts`,
//! `app_cookies`, `revoke`, `detect`. Same rules as `validate.rs`: every error names the field
//! path and the problem, never the value (subjects and hashes are never quoted).

use super::fields::{checked_names, choice, dedup, is_printable};
use super::json::{RawAppCookies, RawDetect, RawRevoke, SecondsByName};

const MAX_SCOPE_LEN: usize = 256;
const MAX_APP_COOKIES: usize = 64;
use super::*;

/// `cookie.legacy_hosts`: hosts on which 0.1.0 (version 1, unscoped) cookies still verify.
pub(super) fn legacy_hosts(raw: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_APP_COOKIES {
        return Err(ConfigError::new(
            "cookie.legacy_hosts",
            format!(
                "has {} entries; at most {MAX_APP_COOKIES} are allowed",
                raw.len()
            ),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, h)| {
            let ok = !h.is_empty()
                && h.len() <= MAX_SCOPE_LEN
                && h.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(ConfigError::new(
                    format!("cookie.legacy_hosts[{i}]"),
                    "must be a host name (1-256 visible ASCII characters)",
                ));
            }
            Ok(String::from_utf8_lossy(&super::host_scope(h.as_bytes())).into_owned())
        })
        .collect()
}

pub(super) fn scope(raw: Option<String>) -> Result<Scope, ConfigError> {
    match raw.as_deref() {
        None | Some("host") => Ok(Scope::Host),
        Some("") => Ok(Scope::None),
        Some(s) if s.len() <= MAX_SCOPE_LEN && s.bytes().all(is_printable) => {
            Ok(Scope::Fixed(s.to_string()))
        }
        Some(_) => Err(ConfigError::new(
            "cookie.scope",
            "must be \"host\", \"\" or 1 to 256 printable ASCII characters without spaces",
        )),
    }
}

pub(super) fn app_cookies(
    ra: RawAppCookies,
    mesh_cookie: &str,
) -> Result<AppCookiesConfig, ConfigError> {
    let mesh = mesh_cookie.to_ascii_lowercase();
    let mut all = match ra.names {
        Some(n) => app_cookie_names("app_cookies.names", n, &mesh)?,
        None => DEFAULT_APP_COOKIES
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .filter(|s| *s != mesh)
            .collect(),
    };
    if let Some(extra) = ra.extra_names {
        all.extend(app_cookie_names("app_cookies.extra_names", extra, &mesh)?);
    }
    Ok(AppCookiesConfig {
        names: dedup(all),
        adopt_until: ra.adopt_until,
    })
}

pub(super) fn app_cookie_names(
    field: &str,
    raw: Vec<String>,
    mesh: &str,
) -> Result<Vec<String>, ConfigError> {
    if raw.len() > MAX_APP_COOKIES {
        return Err(too_many(field, raw.len(), MAX_APP_COOKIES));
    }
    let names = checked_names(field, raw, is_token_byte, "cookie-name token")?;
    if let Some(i) = names.iter().position(|n| n == mesh) {
        return Err(ConfigError::new(
            format!("{field}[{i}]"),
            "must not be the mesh session cookie (cookie.name)",
        ));
    }
    Ok(names)
}

pub(super) fn too_many(field: &str, n: usize, max: usize) -> ConfigError {
    ConfigError::new(field, format!("has {n} entries; at most {max} are allowed"))
}

pub(super) fn revoke(rr: RawRevoke) -> Result<RevokeConfig, ConfigError> {
    Ok(RevokeConfig::new(
        rr.not_before,
        revoked_subjects(rr.subjects.unwrap_or_default())?,
        revoked_sessions(rr.sessions.unwrap_or_default())?,
    ))
}

pub(super) fn revoked_subjects(
    raw: SecondsByName,
) -> Result<serde_json::Map<String, serde_json::Value>, ConfigError> {
    let field = "revoke.subjects";
    if raw.0.len() > MAX_REVOKED {
        return Err(too_many(field, raw.0.len(), MAX_REVOKED));
    }
    // Same rule as a signalled subject (printable ASCII, spaces allowed). The error never
    // names the subject: it may be personal data, and this one is not printable.
    let bad = |s: &str| {
        s.is_empty() || s.len() > MAX_SUBJECT_LEN || !s.bytes().all(|b| (0x20..0x7f).contains(&b))
    };
    if raw.0.keys().any(|s| bad(s)) {
        return Err(ConfigError::new(
            field,
            format!("every subject must be 1 to {MAX_SUBJECT_LEN} printable ASCII characters"),
        ));
    }
    Ok(raw.0)
}

pub(super) fn revoked_sessions(raw: Vec<String>) -> Result<Vec<u64>, ConfigError> {
    if raw.len() > MAX_REVOKED {
        return Err(too_many("revoke.sessions", raw.len(), MAX_REVOKED));
    }
    raw.iter()
        .enumerate()
        .map(|(i, s)| {
            session_hash(s).ok_or_else(|| {
                ConfigError::new(
                    format!("revoke.sessions[{i}]"),
                    "must be a session hash: exactly 16 hex digits",
                )
            })
        })
        .collect()
}

/// 16 hex digits, either case (`from_str_radix` alone would also take a sign).
pub(super) fn session_hash(s: &str) -> Option<u64> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

pub(super) fn detect(rd: RawDetect) -> Result<DetectConfig, ConfigError> {
    let client_change = choice(
        "detect.client_change",
        rd.client_change.as_deref(),
        &[
            ("count", ClientChange::Count),
            ("end", ClientChange::End),
            ("off", ClientChange::Off),
        ],
        "must be \"count\", \"end\" or \"off\"",
    )?;
    Ok(DetectConfig { client_change })
}
