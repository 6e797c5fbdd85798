//! Validation: one function per section turns its raw fields into checked values with the
//! contract's defaults, then [`cross_checks`] applies the rules that span sections.
//! Every error names the field path and the problem, never the value.

use super::fields::{checked_names, choice, dedup, is_printable};
use super::json::{RawConfig, RawCookie, RawKey, RawSignal, RawUpstream, RawUrl};
use super::validate_sessions::{app_cookies, detect, legacy_hosts, revoke, scope};
use super::*;
use base64::Engine as _;

const MIN_SECRET_LEN: usize = 32;
const MAX_KEY_ID_LEN: usize = 32;
const MAX_KEYS: usize = 16;

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(super) fn config(raw: RawConfig, env: Env) -> Result<Config, ConfigError> {
    let mode = mode(raw.mode)?;
    let keys = keys(raw.keys, env)?;
    let mut rc = raw.cookie.unwrap_or_default();
    let scope = scope(rc.scope.take())?;
    let legacy_hosts = legacy_hosts(rc.legacy_hosts.take())?;
    let cookie = cookie(rc)?;
    let config = Config {
        mode,
        keys,
        url: url(raw.url.unwrap_or_default(), &cookie.name)?,
        signal: signal(raw.signal.unwrap_or_default())?,
        upstream: upstream(raw.upstream.unwrap_or_default())?,
        scope,
        legacy_hosts,
        app_cookies: app_cookies(raw.app_cookies.unwrap_or_default(), &cookie.name)?,
        revoke: revoke(raw.revoke.unwrap_or_default())?,
        detect: detect(raw.detect.unwrap_or_default())?,
        // `observe.filter_state`: publish session_guard.session/.decision (two host calls).
        filter_state: raw.observe.and_then(|o| o.filter_state).unwrap_or(true),
        exempt_paths: super::exempt::paths(raw.exempt.and_then(|e| e.paths))?,
        dbsc: super::dbsc::dbsc(raw.dbsc, mode)?,
        cookie,
    };
    cross_checks(&config)?;
    Ok(config)
}

fn mode(raw: Option<String>) -> Result<Mode, ConfigError> {
    choice(
        "mode",
        raw.as_deref(),
        &[("enforce", Mode::Enforce), ("monitor", Mode::Monitor)],
        "must be \"enforce\" or \"monitor\"",
    )
}

fn keys(raw: Option<Vec<RawKey>>, env: Env) -> Result<Vec<Key>, ConfigError> {
    let raw =
        raw.ok_or_else(|| ConfigError::new("keys", "is required (at least one signing key)"))?;
    if raw.is_empty() {
        return Err(ConfigError::new(
            "keys",
            "must contain at least one key; the first signs, all verify",
        ));
    }
    if raw.len() > MAX_KEYS {
        return Err(ConfigError::new(
            "keys",
            format!("has {} keys; at most {MAX_KEYS} are allowed", raw.len()),
        ));
    }
    let mut keys: Vec<Key> = Vec::with_capacity(raw.len());
    for (i, rk) in raw.into_iter().enumerate() {
        let key = key(i, rk, env)?;
        if keys.iter().any(|k| k.id == key.id) {
            return Err(ConfigError::new(
                format!("keys[{i}].id"),
                format!("duplicate key id \"{}\"; key ids must be unique", key.id),
            ));
        }
        keys.push(key);
    }
    Ok(keys)
}

fn key(i: usize, rk: RawKey, env: Env) -> Result<Key, ConfigError> {
    let id = rk
        .id
        .ok_or_else(|| ConfigError::new(format!("keys[{i}].id"), "is required"))?;
    if id.is_empty()
        || id.len() > MAX_KEY_ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ConfigError::new(
            format!("keys[{i}].id"),
            format!("must be 1 to {MAX_KEY_ID_LEN} characters of A-Z, a-z, 0-9, '-' or '_'"),
        ));
    }
    let (field, encoded) = key_material(i, rk.secret, rk.secret_env, env)?;
    let bytes = decode_secret(encoded.trim()).ok_or_else(|| {
        ConfigError::new(field.clone(), "is not valid base64 (standard or URL-safe)")
    })?;
    if bytes.len() < MIN_SECRET_LEN {
        return Err(ConfigError::new(
            field,
            format!(
                "decodes to {} bytes; at least {MIN_SECRET_LEN} are required",
                bytes.len()
            ),
        ));
    }
    Ok(Key::new(id, Secret::new(bytes)))
}

/// The base64 secret of key `i` and the field it came from.
fn key_material(
    i: usize,
    secret: Option<String>,
    secret_env: Option<String>,
    env: Env,
) -> Result<(String, String), ConfigError> {
    match (secret, secret_env) {
        (Some(s), None) => Ok((format!("keys[{i}].secret"), s)),
        (None, Some(var)) => {
            let field = format!("keys[{i}].secret_env");
            match env(&var) {
                Some(v) if !v.trim().is_empty() => Ok((field, v)),
                _ => Err(ConfigError::new(
                    field,
                    format!(
                        "environment variable \"{var}\" is not set in the VM \
                         (Envoy vm_config.environment_variables, Istio vmConfig.env)"
                    ),
                )),
            }
        }
        (Some(_), Some(_)) => Err(ConfigError::new(
            format!("keys[{i}]"),
            "give either `secret` or `secret_env`, not both",
        )),
        (None, None) => Err(ConfigError::new(
            format!("keys[{i}]"),
            "needs `secret` (base64) or `secret_env` (an environment variable name)",
        )),
    }
}

/// Accepts standard or URL-safe alphabets, padded or not. Decoder errors are discarded
/// because they quote the offending byte of the secret.
fn decode_secret(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
}

fn cookie(rc: RawCookie) -> Result<CookieConfig, ConfigError> {
    let name = rc.name.unwrap_or_else(|| "__Host-session".to_string());
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(ConfigError::new(
            "cookie.name",
            "must be a non-empty cookie name of token characters (RFC 6265)",
        ));
    }
    let same_site = match rc.same_site.as_deref() {
        None => SameSite::Lax,
        Some(s) if s.eq_ignore_ascii_case("lax") => SameSite::Lax,
        Some(s) if s.eq_ignore_ascii_case("strict") => SameSite::Strict,
        Some(s) if s.eq_ignore_ascii_case("none") => SameSite::None,
        Some(_) => {
            return Err(ConfigError::new(
                "cookie.same_site",
                "must be \"Strict\", \"Lax\" or \"None\"",
            ))
        }
    };
    let secure = rc.secure.unwrap_or(true);
    if !secure && same_site == SameSite::None {
        return Err(ConfigError::new(
            "cookie.same_site",
            "\"None\" requires a Secure cookie (cookie.secure must be true)",
        ));
    }
    if !secure && (name.starts_with("__Host-") || name.starts_with("__Secure-")) {
        return Err(ConfigError::new(
            "cookie.secure",
            "must be true for a cookie name with the __Host- or __Secure- prefix",
        ));
    }
    let (max_age_s, idle_timeout_s) = lifetimes(rc.max_age_s, rc.idle_timeout_s)?;
    Ok(CookieConfig {
        name,
        same_site,
        secure,
        max_age_s,
        idle_timeout_s,
        anonymous: rc.anonymous.unwrap_or(Anonymous::Always),
    })
}

fn lifetimes(max_age_s: Option<u64>, idle_s: Option<u64>) -> Result<(u64, u64), ConfigError> {
    let max_age_s = max_age_s.unwrap_or(43_200);
    if max_age_s == 0 || max_age_s > 400 * 86_400 {
        return Err(ConfigError::new(
            "cookie.max_age_s",
            "must be between 1 and 34560000 (400 days)",
        ));
    }
    let idle_timeout_s = idle_s.unwrap_or(1_800);
    if idle_timeout_s == 0 || idle_timeout_s > max_age_s {
        return Err(ConfigError::new(
            "cookie.idle_timeout_s",
            "must be between 1 and cookie.max_age_s",
        ));
    }
    Ok((max_age_s, idle_timeout_s))
}

fn url(ru: RawUrl, cookie_name: &str) -> Result<UrlConfig, ConfigError> {
    let mut params: Vec<String> = match ru.params {
        Some(p) => names("url.params", p)?,
        None => DEFAULT_URL_PARAMS.iter().map(|s| s.to_string()).collect(),
    };
    if let Some(extra) = ru.extra_params {
        params.extend(names("url.extra_params", extra)?);
    }
    // The mesh cookie's own name never belongs in a URL, whatever the list says.
    params.push(cookie_name.to_ascii_lowercase());
    let action = choice(
        "url.action",
        ru.action.as_deref(),
        &[
            ("strip", UrlAction::Strip),
            ("redirect", UrlAction::Redirect),
            ("reject", UrlAction::Reject),
        ],
        "must be \"strip\", \"redirect\" or \"reject\"",
    )?;
    Ok(UrlConfig {
        params: dedup(params),
        action,
        query_semicolon: ru.query_semicolon.unwrap_or(true),
    })
}

/// Parameter names: printable ASCII, lowercased for case-insensitive comparison.
fn names(field: &str, names: Vec<String>) -> Result<Vec<String>, ConfigError> {
    checked_names(field, names, is_printable, "printable ASCII")
}

fn signal(rs: RawSignal) -> Result<SignalConfig, ConfigError> {
    let trusted_clusters = rs.trusted_clusters.unwrap_or_default();
    if let Some(i) = trusted_clusters.iter().position(|c| c.is_empty()) {
        return Err(ConfigError::new(
            format!("signal.trusted_clusters[{i}]"),
            "must not be empty",
        ));
    }
    Ok(SignalConfig {
        header: header_name("signal.header", rs.header, "x-session-guard")?,
        subject_header: header_name(
            "signal.subject_header",
            rs.subject_header,
            "x-session-guard-subject",
        )?,
        trusted_clusters,
    })
}

fn upstream(rp: RawUpstream) -> Result<UpstreamConfig, ConfigError> {
    Ok(UpstreamConfig {
        session_header: header_name("upstream.session_header", rp.session_header, "x-session-id")?,
        subject_header: header_name(
            "upstream.subject_header",
            rp.subject_header,
            "x-session-subject",
        )?,
        next_session_header: header_name(
            "upstream.next_session_header",
            rp.next_session_header,
            "x-session-id-next",
        )?,
    })
}

pub(super) fn header_name(
    field: &str,
    value: Option<String>,
    default: &str,
) -> Result<String, ConfigError> {
    let v = value.unwrap_or_else(|| default.to_string());
    if v.is_empty() || !v.bytes().all(is_token_byte) {
        return Err(ConfigError::new(
            field,
            "must be a non-empty HTTP header name (token characters)",
        ));
    }
    Ok(v.to_ascii_lowercase())
}

/// `app_cookies.names` (or the defaults) then `extra_names`, lowercased and deduplicated.
/// The mesh cookie is never an app cookie: naming it is refused, and the defaults skip it.
/// Rules that span fields: headers that would collide on the wire.
fn cross_checks(c: &Config) -> Result<(), ConfigError> {
    let names = [
        ("upstream.session_header", &c.upstream.session_header),
        ("upstream.subject_header", &c.upstream.subject_header),
        (
            "upstream.next_session_header",
            &c.upstream.next_session_header,
        ),
    ];
    for (i, (field, a)) in names.iter().enumerate() {
        if names.iter().skip(i + 1).any(|(_, b)| a == b) {
            return Err(ConfigError::new(
                *field,
                "must differ from the other upstream headers",
            ));
        }
        if matches!(a.as_str(), "cookie" | "host" | "referer" | "authorization") {
            return Err(ConfigError::new(*field, "must not name a standard header"));
        }
    }
    if c.dbsc.enabled && !c.cookie.secure {
        // The ticket is a `__Host-` cookie: browsers drop it without `Secure`.
        return Err(ConfigError::new(
            "dbsc.enabled",
            "needs cookie.secure: the bound cookie is a __Host- cookie",
        ));
    }
    if c.signal.header == c.signal.subject_header {
        return Err(ConfigError::new(
            "signal.subject_header",
            "must differ from signal.header",
        ));
    }
    Ok(())
}
