//! The field reader: the contract's JSON, read from a `serde_json::Value` into raw sections
//! whose fields are all optional. Nothing here checks a value's meaning (`validate` does).
//!
//! Read by hand rather than with `#[derive(Deserialize)]`, for two measured reasons: the
//! derive costs about 20 KB of wasm (about 32 KB with field paths in its errors), and serde's
//! errors quote the offending value (`invalid type: string "..."`), which under `secret`
//! would write key material to Envoy's log. Here every error names the field path and the
//! JSON kind found, never the value.
//!
//! Adding a setting: one line in its `section!` below, then its check in `validate.rs`.

use super::ConfigError;
use serde_json::Value;

/// A value readable from JSON at a field path (for errors).
pub(super) trait FromJson: Sized {
    fn from_json(v: &Value, path: &str) -> Result<Self, ConfigError>;
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

/// A type error at `path`. Never quotes the value: under a secret it is key material.
fn wrong(path: &str, want: &str, got: &Value) -> ConfigError {
    ConfigError::new(path, format!("must be {want}, not {}", kind(got)))
}

pub(super) fn join(path: &str, key: &str) -> String {
    // An empty key (`{"": 1}`) still gets a visible name in the error.
    let key = if key.is_empty() { "\"\"" } else { key };
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl FromJson for String {
    fn from_json(v: &Value, path: &str) -> Result<Self, ConfigError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err(wrong(path, "a string", v)),
        }
    }
}

impl FromJson for bool {
    fn from_json(v: &Value, path: &str) -> Result<Self, ConfigError> {
        v.as_bool().ok_or_else(|| wrong(path, "true or false", v))
    }
}

/// Every number in the contract is a count of seconds (a duration or a unix time).
impl FromJson for u64 {
    fn from_json(v: &Value, path: &str) -> Result<Self, ConfigError> {
        v.as_u64()
            .ok_or_else(|| wrong(path, "a whole number of seconds", v))
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(v: &Value, path: &str) -> Result<Self, ConfigError> {
        let Value::Array(items) = v else {
            return Err(wrong(path, "an array", v));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| T::from_json(item, &format!("{path}[{i}]")))
            .collect()
    }
}

/// An object whose keys are data (subjects), not field names: `{"alice": 1700000000}`,
/// every value a `u64`. Errors name the object only: a key may be personal data, or not
/// printable.
#[derive(Default)]
pub(super) struct SecondsByName(pub(super) serde_json::Map<String, Value>);

impl FromJson for SecondsByName {
    fn from_json(v: &Value, path: &str) -> Result<Self, ConfigError> {
        let Value::Object(obj) = v else {
            return Err(wrong(path, "an object", v));
        };
        if let Some(bad) = obj.values().find(|v| v.as_u64().is_none()) {
            return Err(wrong(path, "an object of whole numbers of seconds", bad));
        }
        Ok(SecondsByName(obj.clone()))
    }
}

/// One JSON object at `path`, whose fields are read by name; any other field is an error.
pub(super) struct Fields<'a> {
    obj: &'a serde_json::Map<String, Value>,
    path: &'a str,
}

impl<'a> Fields<'a> {
    pub(super) fn new(v: &'a Value, path: &'a str, allowed: &[&str]) -> Result<Self, ConfigError> {
        let Value::Object(obj) = v else {
            let field = if path.is_empty() {
                "configuration"
            } else {
                path
            };
            return Err(wrong(field, "an object", v));
        };
        if let Some(unknown) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ConfigError::new(
                join(path, unknown),
                format!("unknown field; expected one of: {}", allowed.join(", ")),
            ));
        }
        Ok(Fields { obj, path })
    }

    /// The field `key`, if present and not `null`.
    pub(super) fn get<T: FromJson>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        self.obj
            .get(key)
            .filter(|v| !v.is_null())
            .map(|v| T::from_json(v, &join(self.path, key)))
            .transpose()
    }
}

/// Declares a raw section once: its struct (every field optional), its allowed field names
/// and its reader all come from the one list of `field: Type`.
macro_rules! section {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $ty:ty,)* }) => {
        $(#[$doc])*
        #[derive(Default)]
        pub(super) struct $name {
            $(pub(super) $field: Option<$ty>,)*
        }

        impl FromJson for $name {
            fn from_json(v: &Value, path: &str) -> Result<Self, ConfigError> {
                let f = Fields::new(v, path, &[$(stringify!($field)),*])?;
                Ok($name { $($field: f.get(stringify!($field))?,)* })
            }
        }
    };
}

section! {
    /// The whole configuration (path `""`).
    RawConfig {
        mode: String,
        keys: Vec<RawKey>,
        cookie: RawCookie,
        url: RawUrl,
        signal: RawSignal,
        upstream: RawUpstream,
        app_cookies: RawAppCookies,
        revoke: RawRevoke,
        detect: RawDetect,
        observe: RawObserve,
        exempt: RawExempt,
        dbsc: RawDbsc,
    }
}

section! {
    RawKey {
        id: String,
        secret: String,
        secret_env: String,
    }
}

section! {
    RawCookie {
        name: String,
        same_site: String,
        secure: bool,
        max_age_s: u64,
        idle_timeout_s: u64,
        scope: String,
        legacy_hosts: Vec<String>,
        anonymous: super::Anonymous,
    }
}

section! {
    RawUrl {
        params: Vec<String>,
        extra_params: Vec<String>,
        action: String,
        query_semicolon: bool,
    }
}

section! {
    RawSignal {
        header: String,
        subject_header: String,
        trusted_clusters: Vec<String>,
    }
}

section! {
    RawUpstream {
        session_header: String,
        subject_header: String,
        next_session_header: String,
    }
}

section! {
    RawAppCookies {
        names: Vec<String>,
        extra_names: Vec<String>,
        adopt_until: u64,
    }
}

section! {
    RawRevoke {
        not_before: u64,
        subjects: SecondsByName,
        sessions: Vec<String>,
    }
}

section! {
    RawObserve {
        filter_state: bool,
    }
}

section! {
    RawExempt {
        paths: Vec<String>,
    }
}

/// `cookie.anonymous`: `true`, `false` or `"navigate"`.
const ANONYMOUS: &str = "must be true, false or \"navigate\"";

impl FromJson for super::Anonymous {
    fn from_json(v: &Value, path: &str) -> Result<Self, ConfigError> {
        match v {
            Value::Bool(true) => Ok(super::Anonymous::Always),
            Value::Bool(false) => Ok(super::Anonymous::Never),
            Value::String(s) if s == "navigate" => Ok(super::Anonymous::Navigate),
            Value::String(_) => Err(ConfigError::new(path, ANONYMOUS)),
            _ => Err(wrong(path, "true, false or \"navigate\"", v)),
        }
    }
}

section! {
    RawDbsc {
        enabled: bool,
        path: String,
        ticket_ttl_s: u64,
        offer: String,
        require_bound_after_s: u64,
        mode: String,
    }
}

section! {
    RawDetect {
        client_change: String,
    }
}

/// Reads the whole configuration: shapes and types only.
pub(super) fn read(root: &Value) -> Result<RawConfig, ConfigError> {
    RawConfig::from_json(root, "")
}
