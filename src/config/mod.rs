//! Configuration: the contract's JSON, parsed once into a validated, immutable [`Config`].
//!
//! Every object rejects unknown fields. Errors name the field (`cookie.same_site`) and the
//! problem, and never contain a secret.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
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

/// Upper bound on a subject, from the contract.
pub const MAX_SUBJECT_LEN: usize = 256;
/// Upper bound on a mesh cookie value, from the contract.
pub const MAX_COOKIE_VALUE_LEN: usize = 4096;
const MIN_SECRET_LEN: usize = 32;
const MAX_KEY_ID_LEN: usize = 32;
const MAX_KEYS: usize = 16;

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
    pub anonymous: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlConfig {
    /// Lowercase ASCII names; compared case-insensitively with decoded parameter names.
    pub params: Vec<String>,
    pub action: UrlAction,
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
}

impl Config {
    pub fn signing_key(&self) -> Option<&Key> {
        self.keys.first()
    }
    pub fn key(&self, id: &[u8]) -> Option<&Key> {
        self.keys.iter().find(|k| k.id.as_bytes() == id)
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

// ---- raw shapes, read from a JSON value ----------------------------------------------
//
// Read by hand from `serde_json::Value` rather than derived: the derive (with path tracking)
// cost about a tenth of the wasm, and this way every error names its field path exactly.

type JsonObject = serde_json::Map<String, Value>;

struct RawConfig {
    mode: Option<String>,
    keys: Option<Vec<RawKey>>,
    cookie: Option<RawCookie>,
    url: Option<RawUrl>,
    signal: Option<RawSignal>,
    upstream: Option<RawUpstream>,
}

struct RawKey {
    id: String,
    secret: Option<String>,
    secret_env: Option<String>,
}

#[derive(Default)]
struct RawCookie {
    name: Option<String>,
    same_site: Option<String>,
    secure: Option<bool>,
    max_age_s: Option<u64>,
    idle_timeout_s: Option<u64>,
    anonymous: Option<bool>,
}

#[derive(Default)]
struct RawUrl {
    params: Option<Vec<String>>,
    extra_params: Option<Vec<String>>,
    action: Option<String>,
}

#[derive(Default)]
struct RawSignal {
    header: Option<String>,
    subject_header: Option<String>,
    trusted_clusters: Option<Vec<String>>,
}

#[derive(Default)]
struct RawUpstream {
    session_header: Option<String>,
    subject_header: Option<String>,
    next_session_header: Option<String>,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn join(path: &str, key: &str) -> String {
    // An empty key (`{"": 1}`) still gets a visible name in the error.
    let key = if key.is_empty() { "\"\"" } else { key };
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// One JSON object at `path`, whose fields are read by name; any other field is an error.
struct Fields<'a> {
    obj: &'a JsonObject,
    path: String,
}

impl<'a> Fields<'a> {
    fn new(v: &'a Value, path: &str, allowed: &[&str]) -> Result<Self, ConfigError> {
        let Value::Object(obj) = v else {
            let field = if path.is_empty() {
                "configuration"
            } else {
                path
            };
            return Err(ConfigError::new(
                field,
                format!("must be an object, not {}", kind(v)),
            ));
        };
        if let Some(unknown) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ConfigError::new(
                join(path, unknown),
                format!("unknown field; expected one of: {}", allowed.join(", ")),
            ));
        }
        Ok(Fields {
            obj,
            path: path.to_string(),
        })
    }

    fn value(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn wrong(&self, key: &str, want: &str, got: &Value) -> ConfigError {
        // Never quote the value: under a secret it is key material.
        ConfigError::new(
            join(&self.path, key),
            format!("must be {want}, not {}", kind(got)),
        )
    }

    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.wrong(key, "a string", v)),
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(key, "true or false", v)),
        }
    }

    fn seconds(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a whole number of seconds", v)),
        }
    }

    fn strings(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(ConfigError::new(
                        format!("{}[{i}]", join(&self.path, key)),
                        format!("must be a string, not {}", kind(other)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(self.wrong(key, "an array of strings", v)),
        }
    }

    fn object(&self, key: &str, allowed: &[&str]) -> Result<Option<Fields<'a>>, ConfigError> {
        self.value(key)
            .map(|v| Fields::new(v, &join(&self.path, key), allowed))
            .transpose()
    }
}

fn read_raw(root: &Value) -> Result<RawConfig, ConfigError> {
    let top = Fields::new(
        root,
        "",
        &["mode", "keys", "cookie", "url", "signal", "upstream"],
    )?;
    let keys = match top.value("keys") {
        None => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let k = Fields::new(v, &format!("keys[{i}]"), &["id", "secret", "secret_env"])?;
                    Ok(RawKey {
                        id: k.string("id")?.ok_or_else(|| {
                            ConfigError::new(format!("keys[{i}].id"), "is required")
                        })?,
                        secret: k.string("secret")?,
                        secret_env: k.string("secret_env")?,
                    })
                })
                .collect::<Result<Vec<_>, ConfigError>>()?,
        ),
        Some(v) => return Err(top.wrong("keys", "an array of keys", v)),
    };
    let cookie = top
        .object(
            "cookie",
            &[
                "name",
                "same_site",
                "secure",
                "max_age_s",
                "idle_timeout_s",
                "anonymous",
            ],
        )?
        .map(|c| -> Result<RawCookie, ConfigError> {
            Ok(RawCookie {
                name: c.string("name")?,
                same_site: c.string("same_site")?,
                secure: c.boolean("secure")?,
                max_age_s: c.seconds("max_age_s")?,
                idle_timeout_s: c.seconds("idle_timeout_s")?,
                anonymous: c.boolean("anonymous")?,
            })
        })
        .transpose()?;
    let url = top
        .object("url", &["params", "extra_params", "action"])?
        .map(|u| -> Result<RawUrl, ConfigError> {
            Ok(RawUrl {
                params: u.strings("params")?,
                extra_params: u.strings("extra_params")?,
                action: u.string("action")?,
            })
        })
        .transpose()?;
    let signal = top
        .object("signal", &["header", "subject_header", "trusted_clusters"])?
        .map(|g| -> Result<RawSignal, ConfigError> {
            Ok(RawSignal {
                header: g.string("header")?,
                subject_header: g.string("subject_header")?,
                trusted_clusters: g.strings("trusted_clusters")?,
            })
        })
        .transpose()?;
    let upstream = top
        .object(
            "upstream",
            &["session_header", "subject_header", "next_session_header"],
        )?
        .map(|p| -> Result<RawUpstream, ConfigError> {
            Ok(RawUpstream {
                session_header: p.string("session_header")?,
                subject_header: p.string("subject_header")?,
                next_session_header: p.string("next_session_header")?,
            })
        })
        .transpose()?;
    Ok(RawConfig {
        mode: top.string("mode")?,
        keys,
        cookie,
        url,
        signal,
        upstream,
    })
}

/// Where a configuration comes from: the JSON bytes and a way to read the VM's environment.
pub struct Source<'a, E: Fn(&str) -> Option<String>> {
    pub json: &'a [u8],
    pub env: E,
}

impl<'a, E: Fn(&str) -> Option<String>> TryFrom<Source<'a, E>> for Config {
    type Error = ConfigError;

    fn try_from(src: Source<'a, E>) -> Result<Self, Self::Error> {
        parse(src.json, &src.env)
    }
}

/// Parses and validates a configuration. `env` reads the VM's environment for `secret_env`.
pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    if json.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ConfigError::new(
            "configuration",
            "is empty; at least `keys` is required",
        ));
    }
    let root: Value = serde_json::from_slice(json).map_err(|e| {
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
    validate(read_raw(&root)?, env)
}

fn validate(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let mode = match raw.mode.as_deref() {
        None | Some("enforce") => Mode::Enforce,
        Some("monitor") => Mode::Monitor,
        Some(_) => {
            return Err(ConfigError::new(
                "mode",
                "must be \"enforce\" or \"monitor\"",
            ))
        }
    };

    let raw_keys = raw
        .keys
        .ok_or_else(|| ConfigError::new("keys", "is required (at least one signing key)"))?;
    if raw_keys.is_empty() {
        return Err(ConfigError::new(
            "keys",
            "must contain at least one key; the first signs, all verify",
        ));
    }
    if raw_keys.len() > MAX_KEYS {
        return Err(ConfigError::new(
            "keys",
            format!(
                "has {} keys; at most {MAX_KEYS} are allowed",
                raw_keys.len()
            ),
        ));
    }
    let mut keys: Vec<Key> = Vec::with_capacity(raw_keys.len());
    for (i, rk) in raw_keys.into_iter().enumerate() {
        let key = validate_key(i, rk, env)?;
        if keys.iter().any(|k| k.id == key.id) {
            return Err(ConfigError::new(
                format!("keys[{i}].id"),
                format!("duplicate key id \"{}\"; key ids must be unique", key.id),
            ));
        }
        keys.push(key);
    }

    let rc = raw.cookie.unwrap_or_default();
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
    let max_age_s = rc.max_age_s.unwrap_or(43_200);
    if max_age_s == 0 || max_age_s > 400 * 86_400 {
        return Err(ConfigError::new(
            "cookie.max_age_s",
            "must be between 1 and 34560000 (400 days)",
        ));
    }
    let idle_timeout_s = rc.idle_timeout_s.unwrap_or(1_800);
    if idle_timeout_s == 0 || idle_timeout_s > max_age_s {
        return Err(ConfigError::new(
            "cookie.idle_timeout_s",
            "must be between 1 and cookie.max_age_s",
        ));
    }
    let cookie = CookieConfig {
        name,
        same_site,
        secure,
        max_age_s,
        idle_timeout_s,
        anonymous: rc.anonymous.unwrap_or(true),
    };

    let ru = raw.url.unwrap_or_default();
    let mut params: Vec<String> = match ru.params {
        Some(p) => validate_names("url.params", p)?,
        None => DEFAULT_URL_PARAMS.iter().map(|s| s.to_string()).collect(),
    };
    if let Some(extra) = ru.extra_params {
        params.extend(validate_names("url.extra_params", extra)?);
    }
    // The mesh cookie's own name never belongs in a URL, whatever the list says.
    params.push(cookie.name.to_ascii_lowercase());
    // Keep the first occurrence of each name (a hand-rolled dedup: sorting pulls in
    // several KiB of code for a list of a dozen names).
    let mut unique: Vec<String> = Vec::with_capacity(params.len());
    for p in params {
        if !unique.contains(&p) {
            unique.push(p);
        }
    }
    let params = unique;
    let action = match ru.action.as_deref() {
        None | Some("strip") => UrlAction::Strip,
        Some("redirect") => UrlAction::Redirect,
        Some("reject") => UrlAction::Reject,
        Some(_) => {
            return Err(ConfigError::new(
                "url.action",
                "must be \"strip\", \"redirect\" or \"reject\"",
            ))
        }
    };

    let rs = raw.signal.unwrap_or_default();
    let signal = SignalConfig {
        header: header_name("signal.header", rs.header, "x-session-guard")?,
        subject_header: header_name(
            "signal.subject_header",
            rs.subject_header,
            "x-session-guard-subject",
        )?,
        trusted_clusters: {
            let tc = rs.trusted_clusters.unwrap_or_default();
            for (i, c) in tc.iter().enumerate() {
                if c.is_empty() {
                    return Err(ConfigError::new(
                        format!("signal.trusted_clusters[{i}]"),
                        "must not be empty",
                    ));
                }
            }
            tc
        },
    };
    let rp = raw.upstream.unwrap_or_default();
    let upstream = UpstreamConfig {
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
    };
    let names = [
        ("upstream.session_header", &upstream.session_header),
        ("upstream.subject_header", &upstream.subject_header),
        (
            "upstream.next_session_header",
            &upstream.next_session_header,
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
    if signal.header == signal.subject_header {
        return Err(ConfigError::new(
            "signal.subject_header",
            "must differ from signal.header",
        ));
    }

    Ok(Config {
        mode,
        keys,
        cookie,
        url: UrlConfig { params, action },
        signal,
        upstream,
    })
}

fn validate_key(
    i: usize,
    rk: RawKey,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Key, ConfigError> {
    if rk.id.is_empty()
        || rk.id.len() > MAX_KEY_ID_LEN
        || !rk
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ConfigError::new(
            format!("keys[{i}].id"),
            format!("must be 1 to {MAX_KEY_ID_LEN} characters of A-Z, a-z, 0-9, '-' or '_'"),
        ));
    }
    let (field, encoded) = match (rk.secret, rk.secret_env) {
        (Some(s), None) => (format!("keys[{i}].secret"), s),
        (None, Some(var)) => {
            let field = format!("keys[{i}].secret_env");
            match env(&var) {
                Some(v) if !v.trim().is_empty() => (field, v),
                _ => {
                    return Err(ConfigError::new(
                        field,
                        format!(
                            "environment variable \"{var}\" is not set in the VM \
                             (Envoy vm_config.environment_variables, Istio vmConfig.env)"
                        ),
                    ))
                }
            }
        }
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                format!("keys[{i}]"),
                "give either `secret` or `secret_env`, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::new(
                format!("keys[{i}]"),
                "needs `secret` (base64) or `secret_env` (an environment variable name)",
            ))
        }
    };
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
    Ok(Key::new(rk.id, Secret(bytes)))
}

/// Accepts standard or URL-safe alphabets, padded or not. Decoder errors are discarded
/// because they quote the offending byte of the secret.
fn decode_secret(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
}

fn validate_names(field: &str, names: Vec<String>) -> Result<Vec<String>, ConfigError> {
    names
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            if n.is_empty() || n.len() > 128 || n.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
                Err(ConfigError::new(
                    format!("{field}[{i}]"),
                    "must be 1 to 128 printable ASCII characters",
                ))
            } else {
                Ok(n.to_ascii_lowercase())
            }
        })
        .collect()
}

fn header_name(field: &str, value: Option<String>, default: &str) -> Result<String, ConfigError> {
    let v = value.unwrap_or_else(|| default.to_string());
    if v.is_empty() || !v.bytes().all(is_token_byte) {
        return Err(ConfigError::new(
            field,
            "must be a non-empty HTTP header name (token characters)",
        ));
    }
    Ok(v.to_ascii_lowercase())
}

/// RFC 7230 `tchar`.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
    const SHORT: &str = "c2hvcnQtc2VjcmV0"; // 12 bytes

    fn env(name: &str) -> Option<String> {
        (name == "SG_KEY").then(|| KEY.to_string())
    }

    fn parse_str(s: &str) -> Result<Config, ConfigError> {
        parse(s.as_bytes(), &env)
    }

    #[test]
    fn minimal_config_gets_contract_defaults() {
        let c = parse_str(&format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]}}"#)).unwrap();
        assert_eq!(c.mode, Mode::Enforce);
        assert_eq!(c.cookie.name, "__Host-session");
        assert_eq!(c.cookie.same_site, SameSite::Lax);
        assert!(c.cookie.secure);
        assert_eq!(c.cookie.max_age_s, 43_200);
        assert_eq!(c.cookie.idle_timeout_s, 1_800);
        assert!(c.cookie.anonymous);
        assert_eq!(c.url.action, UrlAction::Strip);
        for p in [
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
            "__host-session",
        ] {
            assert!(c.url.params.iter().any(|x| x == p), "missing default {p}");
        }
        assert!(!c.url.params.iter().any(|x| x == "session_id"));
        assert_eq!(c.signal.header, "x-session-guard");
        assert_eq!(c.signal.subject_header, "x-session-guard-subject");
        assert!(c.signal.trusted_clusters.is_empty());
        assert_eq!(c.upstream.session_header, "x-session-id");
        assert_eq!(c.upstream.subject_header, "x-session-subject");
        assert_eq!(c.upstream.next_session_header, "x-session-id-next");
        assert_eq!(c.keys[0].secret.expose().len(), 32);
    }

    #[test]
    fn secret_env_reads_the_vm_environment() {
        let c = parse_str(r#"{"keys":[{"id":"k1","secret_env":"SG_KEY"}]}"#).unwrap();
        assert_eq!(
            c.keys[0].secret.expose(),
            b"0123456789abcdef0123456789abcdef"
        );
    }

    #[test]
    fn params_replace_and_extra_params_extend() {
        let c = parse_str(&format!(
            r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}],"url":{{"params":["SID"],"extra_params":["Token_X"]}}}}"#
        ))
        .unwrap();
        assert_eq!(c.url.params, vec!["sid", "token_x", "__host-session"]);
    }

    #[test]
    fn refused_configurations_name_field_and_problem() {
        let k = format!(r#"{{"id":"k1","secret":"{KEY}"}}"#);
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "unknown top-level field",
                format!(r#"{{"keys":[{k}],"modee":"x"}}"#),
                "modee",
            ),
            (
                "unknown nested field",
                format!(r#"{{"keys":[{k}],"cookie":{{"nam":"x"}}}}"#),
                "cookie",
            ),
            ("no keys", r#"{"keys":[]}"#.into(), "keys"),
            ("keys missing", r#"{}"#.into(), "keys"),
            (
                "short key",
                format!(r#"{{"keys":[{{"id":"k1","secret":"{SHORT}"}}]}}"#),
                "keys[0].secret",
            ),
            (
                "not base64",
                r#"{"keys":[{"id":"k1","secret":"!!!not base64!!!"}]}"#.into(),
                "keys[0].secret",
            ),
            (
                "unset env",
                r#"{"keys":[{"id":"k1","secret_env":"NOPE"}]}"#.into(),
                "keys[0].secret_env",
            ),
            (
                "duplicate id",
                format!(r#"{{"keys":[{k},{k}]}}"#),
                "keys[1].id",
            ),
            (
                "bad same_site",
                format!(r#"{{"keys":[{k}],"cookie":{{"same_site":"Sideways"}}}}"#),
                "cookie.same_site",
            ),
            (
                "None without Secure",
                format!(
                    r#"{{"keys":[{k}],"cookie":{{"same_site":"None","secure":false,"name":"sg"}}}}"#
                ),
                "cookie.same_site",
            ),
            (
                "__Host- without Secure",
                format!(r#"{{"keys":[{k}],"cookie":{{"secure":false}}}}"#),
                "cookie.secure",
            ),
            (
                "wrong type",
                format!(r#"{{"keys":[{k}],"cookie":{{"max_age_s":"long"}}}}"#),
                "cookie.max_age_s",
            ),
            (
                "zero idle",
                format!(r#"{{"keys":[{k}],"cookie":{{"idle_timeout_s":0}}}}"#),
                "cookie.idle_timeout_s",
            ),
            (
                "bad mode",
                format!(r#"{{"keys":[{k}],"mode":"audit"}}"#),
                "mode",
            ),
            (
                "bad action",
                format!(r#"{{"keys":[{k}],"url":{{"action":"drop"}}}}"#),
                "url.action",
            ),
            (
                "bad key id",
                format!(r#"{{"keys":[{{"id":"k 1","secret":"{KEY}"}}]}}"#),
                "keys[0].id",
            ),
            (
                "both secret forms",
                format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}","secret_env":"SG_KEY"}}]}}"#),
                "keys[0]",
            ),
            (
                "bad header",
                format!(r#"{{"keys":[{k}],"signal":{{"header":"x y"}}}}"#),
                "signal.header",
            ),
            ("not json", "{".into(), "configuration"),
            (
                "empty field name",
                format!(r#"{{"keys":[{k}],"":2}}"#),
                "\"\"",
            ),
            ("empty", "".into(), "configuration"),
        ];
        for (name, json, field) in cases {
            let err = parse_str(&json).expect_err(name);
            assert!(
                err.field.starts_with(field),
                "{name}: field {:?} should start with {field:?} ({err})",
                err.field
            );
            assert!(!err.problem.is_empty(), "{name}");
        }
    }

    #[test]
    fn errors_and_debug_never_contain_secrets() {
        let bad_b64 = "c2VjcmV0LXNlY3JldC1zZWNyZXQ$$$";
        let e = parse_str(&format!(
            r#"{{"keys":[{{"id":"k1","secret":"{bad_b64}"}}]}}"#
        ))
        .unwrap_err();
        assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
        let e = parse_str(r#"{"keys":[{"id":"k1","secret":1234567890123}]}"#).unwrap_err();
        assert!(!e.to_string().contains("1234567890123"), "{e}");
        let e =
            parse_str(&format!(r#"{{"keys":[{{"id":"k1","secret":"{SHORT}"}}]}}"#)).unwrap_err();
        assert!(!e.to_string().contains(SHORT), "{e}");
        let c = parse_str(&format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]}}"#)).unwrap();
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains(KEY) && !dbg.contains("0123456789abcdef"),
            "{dbg}"
        );
        assert!(dbg.contains("<redacted>"));
    }

    #[test]
    fn trusted_clusters_gate_signals() {
        let c = parse_str(&format!(
            r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}],"signal":{{"trusted_clusters":["auth"]}}}}"#
        ))
        .unwrap();
        assert!(c.cluster_may_signal(Some(b"auth")));
        assert!(!c.cluster_may_signal(Some(b"app")));
        assert!(!c.cluster_may_signal(None));
        let open = parse_str(&format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]}}"#)).unwrap();
        assert!(open.cluster_may_signal(None));
        assert!(open.cluster_may_signal(Some(b"anything")));
    }
}
