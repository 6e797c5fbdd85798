//! The mesh session cookie value: mint, sign, verify.
//!
//! Format (version 2), all ASCII, at most 4096 bytes:
//!
//! ```text
//! v2.<key id>.<payload>.<mac>
//! payload = base64url(issued_at u64 BE || last_used u64 BE || id 16 bytes || scope 16 bytes
//!                     || client 8 bytes || n u8 || n x binding 16 bytes
//!                     || [device 16 bytes, when n's high bit is set] || subject bytes)
//! mac     = base64url(HMAC-SHA256(key, u16 BE len(cookie name) || cookie name || "v2.<key id>.<payload>"))
//! ```
//!
//! The MAC covers the cookie's name (a value lifted into another cookie name fails), the key
//! id (a value cannot be re-attributed to another key) and every field, the scope among them:
//! `scope` is a digest of the scope the session was minted for (`cookie.scope`), compared with
//! the request's after the signature. Base64 decoding is canonical-only, so every changed
//! character changes the signed bytes or fails to decode.
//!
//! The `binding`s are MACs keyed with the session's own 128-bit ID, and `client` a hash over
//! that ID (see [`SessionId::client_fingerprint`]): they never change with a signing-key
//! rotation, mean nothing outside their session, and hold no value in clear. `device` is the
//! thumbprint of the DBSC device key the session is bound to (`crate::dbsc`): under the MAC,
//! so a bound session can never be presented as unbound (0.2.0 refuses such a value: n > 8).
//! Version 1 (0.1.0: no scope, client or bindings) still decodes, marked `legacy`,
//! so that policy can accept it where `cookie.legacy_hosts` says.

use crate::config::{Key, MAX_COOKIE_VALUE_LEN, MAX_SUBJECT_LEN};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

pub const ID_LEN: usize = 16;
/// Length of a scope digest and of an app-cookie binding.
pub const TAG_LEN: usize = 16;
/// Length of a client fingerprint.
pub const CLIENT_LEN: usize = 8;
/// Bytes of a binding that name its cookie.
pub const NAME_TAG_LEN: usize = 4;
/// App-cookie bindings one session holds at most.
pub const MAX_BINDINGS: usize = 8;
const VERSION: &str = "v2";
const LEGACY_VERSION: &[u8] = b"v1";
const MAC_LEN: usize = 32;
const LEGACY_FIXED: usize = 8 + 8 + ID_LEN;
const FIXED_PAYLOAD: usize = LEGACY_FIXED + TAG_LEN + CLIENT_LEN + 1;
/// Clock skew tolerated between proxies that share keys.
const MAX_FUTURE_SKEW_S: u64 = 300;
/// The `n` byte's flag: a device thumbprint follows the bindings.
const DEVICE_FLAG: u8 = 0x80;

/// A session identifier: 128 bits from the VM's CSPRNG. `Debug` and `Display` never print
/// it; use [`SessionId::encoded`] where the raw ID is meant to go (upstream headers).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionId(pub [u8; ID_LEN]);

impl SessionId {
    /// The URL-safe form sent to upstreams (22 characters).
    pub fn encoded(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    fn keyed(&self, domain: &[u8]) -> Option<HmacSha256> {
        let mut mac = HmacSha256::new_from_slice(&self.0).ok()?;
        mac.update(domain);
        Some(mac)
    }

    /// The fingerprint of a client (a digest of its `User-Agent`) within this session: SHA-256
    /// over a short label, the ID and the digest, truncated. A plain hash, not a MAC: the
    /// cookie's HMAC protects it and the ID travels in the same payload, so a key would add
    /// nothing; the ID makes one browser's fingerprints differ between sessions. Fixed-length
    /// fields and a 6-byte label fit one SHA-256 block: this runs on every request.
    pub fn client_fingerprint(&self, ua_digest: &[u8; 32]) -> [u8; CLIENT_LEN] {
        let mut h = Sha256::new();
        h.update(b"sg-fp\0");
        h.update(self.0);
        h.update(ua_digest);
        prefix(&h.finalize())
    }

    /// The binding of an app session cookie to this session: 4 bytes naming the cookie
    /// (`name` ASCII case-insensitive; so a deletion, which carries no value, finds it), then
    /// a 96-bit MAC over name and value.
    pub fn binding(&self, name: &[u8], value: &[u8]) -> [u8; TAG_LEN] {
        let mac: [u8; TAG_LEN - NAME_TAG_LEN] = self.keyed(b"session-guard app cookie\0").map_or(
            [0; TAG_LEN - NAME_TAG_LEN],
            |mut mac| {
                lower_into(&mut mac, name);
                mac.update(&[0]);
                mac.update(value);
                prefix(&mac.finalize().into_bytes())
            },
        );
        let mut out = [0u8; TAG_LEN];
        let (head, tail) = out.split_at_mut(NAME_TAG_LEN);
        head.copy_from_slice(&self.name_tag(name));
        tail.copy_from_slice(&mac);
        out
    }

    /// The first bytes of every binding of cookie `name` in this session.
    pub fn name_tag(&self, name: &[u8]) -> [u8; NAME_TAG_LEN] {
        self.keyed(b"session-guard app cookie name\0")
            .map_or([0; NAME_TAG_LEN], |mut mac| {
                lower_into(&mut mac, name);
                prefix(&mac.finalize().into_bytes())
            })
    }
}

/// The first `N` bytes of a 32-byte digest (truncation of a MAC or hash).
fn prefix<const N: usize>(digest: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (o, d) in out.iter_mut().zip(digest) {
        *o = *d;
    }
    out
}

fn lower_into(mac: &mut HmacSha256, name: &[u8]) {
    for b in name {
        mac.update(&[b.to_ascii_lowercase()]);
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

/// The digest of a scope (`cookie.scope` resolved for a request) that a session carries.
pub fn scope_digest(scope: &[u8]) -> [u8; TAG_LEN] {
    let mut h = Sha256::new();
    h.update(b"session-guard scope\0");
    h.update(scope);
    prefix(&h.finalize())
}

/// SHA-256 of a `User-Agent` value (what [`SessionId::client_fingerprint`] takes).
pub fn ua_digest(ua: &[u8]) -> [u8; 32] {
    Sha256::digest(ua).into()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub issued_at: u64,
    pub last_used: u64,
    pub subject: Option<String>,
    /// [`scope_digest`] of the scope it was minted for.
    pub scope: [u8; TAG_LEN],
    /// Client fingerprint recorded at minting or rotation; zeros: none recorded.
    pub client: [u8; CLIENT_LEN],
    /// App session cookies bound to this session, oldest first.
    pub bindings: Vec<[u8; TAG_LEN]>,
    /// The thumbprint of the DBSC device key this session is bound to.
    pub device: Option<[u8; TAG_LEN]>,
    /// Decoded from a version-1 value (no scope, client or bindings).
    pub legacy: bool,
}

impl Session {
    pub fn new(id: SessionId, now: u64, subject: Option<String>) -> Self {
        Session {
            id,
            issued_at: now,
            last_used: now,
            subject,
            scope: [0; TAG_LEN],
            client: [0; CLIENT_LEN],
            bindings: Vec::new(),
            device: None,
            legacy: false,
        }
    }

    /// Binds an app cookie, replacing the binding of the same cookie name (an app that
    /// re-issues its cookie); beyond [`MAX_BINDINGS`] the oldest goes. Returns whether one
    /// went for lack of room.
    pub fn bind(&mut self, binding: [u8; TAG_LEN]) -> bool {
        let name = binding.get(..NAME_TAG_LEN);
        self.bindings.retain(|b| b.get(..NAME_TAG_LEN) != name);
        self.bindings.push(binding);
        if self.bindings.len() > MAX_BINDINGS {
            self.bindings.remove(0);
            return true;
        }
        false
    }

    /// Removes the binding of cookie `name`; whether there was one.
    pub fn unbind(&mut self, name: &[u8]) -> bool {
        let tag = self.id.name_tag(name);
        let before = self.bindings.len();
        self.bindings
            .retain(|b| b.get(..NAME_TAG_LEN) != Some(&tag[..]));
        self.bindings.len() != before
    }

    /// Whether some value of app cookie `name` is bound to this session.
    pub fn has_binding_for(&self, name: &[u8]) -> bool {
        let tag = self.id.name_tag(name);
        self.bindings
            .iter()
            .any(|b| b.get(..NAME_TAG_LEN) == Some(&tag[..]))
    }

    /// Whether app cookie `name=value` is bound to this session.
    pub fn is_bound(&self, name: &[u8], value: &[u8]) -> bool {
        let b = self.id.binding(name, value);
        // Not secret-dependent timing: the binding is keyed by this session's own ID, which
        // the client presenting the cookie already holds.
        self.bindings.contains(&b)
    }
}

/// Why a cookie value was refused. Callers count it; clients never learn it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    Forged,
    UnknownKey,
    Malformed,
    Oversized,
    ExpiredAbsolute,
    ExpiredIdle,
    /// Minted for another scope (`cookie.scope`).
    WrongScope,
    /// Revoked by configuration (`revoke.*`).
    Revoked,
    /// Presented by another client and `detect.client_change` is `end`.
    ClientChanged,
    /// Authenticated, not bound to a device key `dbsc.require_bound_after_s` after its login.
    Unbound,
}

impl Invalid {
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::Forged => "forged",
            Invalid::UnknownKey => "unknown_key",
            Invalid::Malformed => "malformed",
            Invalid::Oversized => "oversized",
            Invalid::ExpiredAbsolute => "expired_absolute",
            Invalid::ExpiredIdle => "expired_idle",
            Invalid::WrongScope => "wrong_scope",
            Invalid::Revoked => "revoked",
            Invalid::ClientChanged => "client_changed",
            Invalid::Unbound => "unbound",
        }
    }
}

/// A subject is 1 to 256 bytes of printable ASCII (no controls, no DEL, no 0x80-0xFF).
pub fn valid_subject(s: &[u8]) -> bool {
    !s.is_empty() && s.len() <= MAX_SUBJECT_LEN && s.iter().all(|b| (0x20..0x7f).contains(b))
}

fn mac_for(key: &Key, cookie_name: &[u8], signed: &[u8]) -> Option<HmacSha256> {
    let mut mac = key.mac()?;
    let name_len = u16::try_from(cookie_name.len()).ok()?;
    mac.update(&name_len.to_be_bytes());
    mac.update(cookie_name);
    mac.update(signed);
    Some(mac)
}

/// Signs `session` as the value of cookie `cookie_name` with `key`. `None` only if the
/// session cannot be represented (subject too long, too many bindings), which callers prevent.
pub fn encode(session: &Session, cookie_name: &str, key: &Key) -> Option<String> {
    let subject = session.subject.as_deref().unwrap_or("");
    if !subject.is_empty() && !valid_subject(subject.as_bytes()) {
        return None;
    }
    let n = u8::try_from(session.bindings.len()).ok()?;
    let mut payload =
        Vec::with_capacity(FIXED_PAYLOAD + TAG_LEN * session.bindings.len() + subject.len());
    payload.extend_from_slice(&session.issued_at.to_be_bytes());
    payload.extend_from_slice(&session.last_used.to_be_bytes());
    payload.extend_from_slice(&session.id.0);
    payload.extend_from_slice(&session.scope);
    payload.extend_from_slice(&session.client);
    payload.push(if session.device.is_some() {
        n | DEVICE_FLAG
    } else {
        n
    });
    for b in &session.bindings {
        payload.extend_from_slice(b);
    }
    if let Some(d) = &session.device {
        payload.extend_from_slice(d);
    }
    payload.extend_from_slice(subject.as_bytes());
    let mut out = String::with_capacity(128 + payload.len() * 4 / 3);
    out.push_str(VERSION);
    out.push('.');
    out.push_str(&key.id);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
    let tag = mac_for(key, cookie_name.as_bytes(), out.as_bytes())?
        .finalize()
        .into_bytes();
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, &mut out);
    (out.len() <= MAX_COOKIE_VALUE_LEN).then_some(out)
}

/// Verifies a cookie value's format and signature (not its age, scope or revocation; see
/// [`check_age`] and the policy's validator).
pub fn decode(value: &[u8], cookie_name: &[u8], keys: &[Key]) -> Result<Session, Invalid> {
    if value.len() > MAX_COOKIE_VALUE_LEN {
        return Err(Invalid::Oversized);
    }
    let mut parts = value.split(|&b| b == b'.');
    let (Some(version), Some(kid), Some(payload_b64), Some(mac_b64), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(Invalid::Malformed);
    };
    let legacy = version == LEGACY_VERSION;
    if version != VERSION.as_bytes() && !legacy {
        return Err(Invalid::Malformed);
    }
    let key = keys
        .iter()
        .find(|k| k.id.as_bytes() == kid)
        .ok_or(Invalid::UnknownKey)?;
    let tag = URL_SAFE_NO_PAD
        .decode(mac_b64)
        .map_err(|_| Invalid::Malformed)?;
    if tag.len() != MAC_LEN {
        return Err(Invalid::Malformed);
    }
    let signed_len = version.len() + 1 + kid.len() + 1 + payload_b64.len();
    let signed = value.get(..signed_len).ok_or(Invalid::Malformed)?;
    let mac = mac_for(key, cookie_name, signed).ok_or(Invalid::Malformed)?;
    mac.verify_slice(&tag).map_err(|_| Invalid::Forged)?;

    // Authentic from here on: a failure below means a bug in our own encoder, not an attack.
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| Invalid::Malformed)?;
    parse_payload(&payload, legacy)
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], Invalid> {
    let (head, tail) = rest.split_at_checked(n).ok_or(Invalid::Malformed)?;
    *rest = tail;
    Ok(head)
}

fn array<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], Invalid> {
    take(rest, N)?.try_into().map_err(|_| Invalid::Malformed)
}

/// Reads an authentic payload (after the MAC): public for the fuzz target.
pub fn parse_payload(payload: &[u8], legacy: bool) -> Result<Session, Invalid> {
    let mut rest = payload;
    let issued_at = u64::from_be_bytes(array(&mut rest)?);
    let last_used = u64::from_be_bytes(array(&mut rest)?);
    let mut s = Session::new(SessionId(array(&mut rest)?), issued_at, None);
    s.last_used = last_used;
    s.legacy = legacy;
    if !legacy {
        s.scope = array(&mut rest)?;
        s.client = array(&mut rest)?;
        let [flags] = array::<1>(&mut rest)?;
        let n = flags & !DEVICE_FLAG;
        if usize::from(n) > MAX_BINDINGS {
            return Err(Invalid::Malformed);
        }
        for _ in 0..n {
            s.bindings.push(array(&mut rest)?);
        }
        if flags & DEVICE_FLAG != 0 {
            s.device = Some(array(&mut rest)?);
        }
    }
    if !rest.is_empty() {
        if !valid_subject(rest) {
            return Err(Invalid::Malformed);
        }
        s.subject = Some(String::from_utf8(rest.to_vec()).map_err(|_| Invalid::Malformed)?);
    }
    if last_used < issued_at {
        return Err(Invalid::Malformed);
    }
    Ok(s)
}

/// Absolute lifetime from minting, then idle time since the last recorded use.
pub fn check_age(
    s: &Session,
    now: u64,
    max_age_s: u64,
    idle_timeout_s: u64,
) -> Result<(), Invalid> {
    if s.issued_at > now.saturating_add(MAX_FUTURE_SKEW_S) {
        return Err(Invalid::Malformed);
    }
    if now.saturating_sub(s.issued_at) >= max_age_s {
        return Err(Invalid::ExpiredAbsolute);
    }
    if now.saturating_sub(s.last_used) > idle_timeout_s {
        return Err(Invalid::ExpiredIdle);
    }
    Ok(())
}

/// The sliding-use rule: re-issue (same ID, new last-use time) once a tenth of the idle
/// timeout has passed since the recorded last use (at least one second). A session is
/// therefore never expired while used at least every 9/10 of `idle_timeout_s`, and a busy
/// session gets a new cookie at most once per tenth of the idle timeout, not on every response.
pub fn needs_reissue(s: &Session, now: u64, idle_timeout_s: u64) -> bool {
    now.saturating_sub(s.last_used) >= reissue_interval(idle_timeout_s)
}

pub fn reissue_interval(idle_timeout_s: u64) -> u64 {
    (idle_timeout_s / 10).max(1)
}

/// Seconds left of the session's absolute lifetime: the cookie's `Max-Age`.
pub fn remaining_lifetime(s: &Session, now: u64, max_age_s: u64) -> u64 {
    s.issued_at
        .saturating_add(max_age_s)
        .saturating_sub(now)
        .max(1)
}

/// The hash that names a session in log lines, access logs and `revoke.sessions`: the first
/// 8 bytes of SHA-256 over a fixed label and the 128-bit random ID, as 16 hex digits. Not
/// keyed, so it survives every key rotation; not reversible, since the ID is 128 random bits.
pub fn session_hash(id: &SessionId) -> [u8; 8] {
    hash8(b"session-guard session tag", &id.0)
}

/// The same hash over a presented (invalid) cookie value: repeated attempts correlate in logs
/// without the value ever being written.
pub fn value_hash(value: &[u8]) -> [u8; 8] {
    hash8(b"session-guard cookie tag", value)
}

fn hash8(label: &[u8], bytes: &[u8]) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(label);
    h.update(bytes);
    prefix(&h.finalize())
}

/// 16 lowercase hex digits.
pub fn hex16(h: &[u8; 8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(16);
    for b in h {
        for nibble in [b >> 4, b & 0x0f] {
            s.push(char::from(
                HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests;
