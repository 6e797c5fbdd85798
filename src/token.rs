//! The mesh session cookie value: mint, sign, verify.
//!
//! Format (version 2), all ASCII, at most 4096 bytes:
//!
//! ```text
//! v2.<key id>.<payload>.<mac>
//! payload = base64url(issued_at u64 BE || last_used u64 BE || id 16 bytes || scope 16 bytes
//!                     || client 8 bytes || n u8 || n x binding 16 bytes || subject bytes)
//! mac     = base64url(HMAC-SHA256(key, u16 BE len(cookie name) || cookie name || "v2.<key id>.<payload>"))
//! ```
//!
//! The MAC covers the cookie's name (a value lifted into another cookie name fails), the key
//! id (a value cannot be re-attributed to another key) and every field, the scope among them:
//! `scope` is a digest of the scope the session was minted for (`cookie.scope`), compared with
//! the request's after the signature. Base64 decoding is canonical-only, so every changed
//! character changes the signed bytes or fails to decode.
//!
//! `client` and the `binding`s are MACs keyed with the session's own 128-bit ID: they never
//! change with a signing-key rotation, mean nothing outside their session, and hold no value
//! in clear. Version 1 (0.1.0: no scope, client or bindings) still decodes, marked `legacy`,
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

    /// The fingerprint of a client (a digest of its `User-Agent`) within this session.
    pub fn client_fingerprint(&self, ua_digest: &[u8; 32]) -> [u8; CLIENT_LEN] {
        let mut out = [0u8; CLIENT_LEN];
        if let Some(mut mac) = self.keyed(b"session-guard client\0") {
            mac.update(ua_digest);
            let tag = mac.finalize().into_bytes();
            for (o, t) in out.iter_mut().zip(tag.iter()) {
                *o = *t;
            }
        }
        out
    }

    /// The binding of an app session cookie to this session: 4 bytes naming the cookie
    /// (`name` ASCII case-insensitive; so a deletion, which carries no value, finds it), then
    /// a 96-bit MAC over name and value.
    pub fn binding(&self, name: &[u8], value: &[u8]) -> [u8; TAG_LEN] {
        let mut out = [0u8; TAG_LEN];
        let (head, tail) = out.split_at_mut(NAME_TAG_LEN);
        head.copy_from_slice(&self.name_tag(name));
        if let Some(mut mac) = self.keyed(b"session-guard app cookie\0") {
            lower_into(&mut mac, name);
            mac.update(&[0]);
            mac.update(value);
            let tag = mac.finalize().into_bytes();
            for (o, t) in tail.iter_mut().zip(tag.iter()) {
                *o = *t;
            }
        }
        out
    }

    /// The first bytes of every binding of cookie `name` in this session.
    pub fn name_tag(&self, name: &[u8]) -> [u8; NAME_TAG_LEN] {
        let mut out = [0u8; NAME_TAG_LEN];
        if let Some(mut mac) = self.keyed(b"session-guard app cookie name\0") {
            lower_into(&mut mac, name);
            let tag = mac.finalize().into_bytes();
            for (o, t) in out.iter_mut().zip(tag.iter()) {
                *o = *t;
            }
        }
        out
    }
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
    let d = h.finalize();
    let mut out = [0u8; TAG_LEN];
    for (o, t) in out.iter_mut().zip(d.iter()) {
        *o = *t;
    }
    out
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
    payload.push(n);
    for b in &session.bindings {
        payload.extend_from_slice(b);
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
        let [n] = array::<1>(&mut rest)?;
        if usize::from(n) > MAX_BINDINGS {
            return Err(Invalid::Malformed);
        }
        for _ in 0..n {
            s.bindings.push(array(&mut rest)?);
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
    let d = h.finalize();
    let mut out = [0u8; 8];
    for (o, t) in out.iter_mut().zip(d.iter()) {
        *o = *t;
    }
    out
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
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use proptest::prelude::*;

    fn key(id: &str, fill: u8) -> Key {
        Key::new(id, Secret::new(vec![fill; 32]))
    }

    const NAME: &str = "__Host-session";

    fn session(subject: Option<&str>) -> Session {
        let mut s = Session::new(
            SessionId([7; ID_LEN]),
            1_700_000_000,
            subject.map(str::to_string),
        );
        s.last_used = 1_700_000_100;
        s.scope = scope_digest(b"shop.example");
        s.client = s.id.client_fingerprint(&ua_digest(b"Mozilla/5.0"));
        s.bindings = vec![s.id.binding(b"JSESSIONID", b"abc")];
        s
    }

    /// RFC 4231 test cases 1, 2, 3, 4, 6 and 7 for HMAC-SHA256, through the same
    /// RustCrypto types the cookie MAC uses.
    #[test]
    fn hmac_sha256_matches_rfc4231_vectors() {
        fn hex(s: &str) -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        }
        let cases: [(Vec<u8>, Vec<u8>, &str); 6] = [
            (vec![0x0b; 20], b"Hi There".to_vec(), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
            (b"Jefe".to_vec(), b"what do ya want for nothing?".to_vec(), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
            (vec![0xaa; 20], vec![0xdd; 50], "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
            (hex("0102030405060708090a0b0c0d0e0f10111213141516171819"), vec![0xcd; 50], "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
            (vec![0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
            (vec![0xaa; 131], b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".to_vec(), "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
        ];
        for (k, data, want) in cases {
            let mut mac = HmacSha256::new_from_slice(&k).unwrap();
            mac.update(&data);
            let got = mac.clone().finalize().into_bytes();
            assert_eq!(got.to_vec(), hex(want));
            assert!(mac.verify_slice(&hex(want)).is_ok());
        }
    }

    #[test]
    fn minted_value_round_trips_with_and_without_subject() {
        let k = key("k1", 1);
        for subject in [None, Some("alice"), Some(&"x".repeat(256)[..])] {
            let s = session(subject);
            let v = encode(&s, NAME, &k).unwrap();
            assert!(v.starts_with("v2.k1."));
            assert!(v.len() <= 4096);
            assert!(v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
            assert_eq!(
                decode(v.as_bytes(), NAME.as_bytes(), std::slice::from_ref(&k)).unwrap(),
                s
            );
        }
    }

    #[test]
    fn invalid_values_get_their_own_reason() {
        let k1 = key("k1", 1);
        let good = encode(&session(Some("bob")), NAME, &k1).unwrap();
        let other = encode(&session(Some("bob")), NAME, &key("k1", 2)).unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        let cases: Vec<(&str, Vec<u8>, Invalid)> = vec![
            (
                "signed by another secret under the same id",
                other.into_bytes(),
                Invalid::Forged,
            ),
            (
                "unknown key id",
                good.replacen("v2.k1.", "v2.k9.", 1).into_bytes(),
                Invalid::UnknownKey,
            ),
            (
                "unknown version",
                good.replacen("v2.", "v3.", 1).into_bytes(),
                Invalid::Malformed,
            ),
            (
                "missing mac",
                format!("{}.{}.{}", parts[0], parts[1], parts[2]).into_bytes(),
                Invalid::Malformed,
            ),
            (
                "extra part",
                format!("{good}.x").into_bytes(),
                Invalid::Malformed,
            ),
            ("empty", Vec::new(), Invalid::Malformed),
            ("garbage", b"\xff\xfe\x00;=\"".to_vec(), Invalid::Malformed),
            (
                "short mac",
                format!("{}.{}.{}.AAAA", parts[0], parts[1], parts[2]).into_bytes(),
                Invalid::Malformed,
            ),
            ("oversized", vec![b'a'; 4097], Invalid::Oversized),
            (
                "payload swapped",
                format!(
                    "{}.{}.{}.{}",
                    parts[0], parts[1], "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", parts[3]
                )
                .into_bytes(),
                Invalid::Forged,
            ),
        ];
        for (name, v, want) in cases {
            assert_eq!(
                decode(&v, NAME.as_bytes(), std::slice::from_ref(&k1)),
                Err(want),
                "{name}"
            );
        }
    }

    #[test]
    fn key_ring_verifies_with_any_listed_key() {
        let old = key("old", 1);
        let new = key("new", 2);
        let v = encode(&session(None), NAME, &old).unwrap();
        assert!(decode(v.as_bytes(), NAME.as_bytes(), &[new.clone(), old.clone()]).is_ok());
        assert_eq!(
            decode(v.as_bytes(), NAME.as_bytes(), &[new]),
            Err(Invalid::UnknownKey)
        );
    }

    #[test]
    fn age_rules() {
        let s = session(None); // issued 1_700_000_000, last used +100
        let cases = [
            ("fresh", 1_700_000_100, Ok(())),
            (
                "idle exactly at limit is still valid",
                1_700_000_100 + 1800,
                Ok(()),
            ),
            (
                "idle past limit",
                1_700_000_100 + 1801,
                Err(Invalid::ExpiredIdle),
            ),
            (
                "absolute lifetime reached",
                1_700_000_000 + 43_200,
                Err(Invalid::ExpiredAbsolute),
            ),
            (
                "issued far in the future",
                1_700_000_000 - 301,
                Err(Invalid::Malformed),
            ),
            ("small clock skew tolerated", 1_700_000_000 - 299, Ok(())),
        ];
        for (name, now, want) in cases {
            assert_eq!(check_age(&s, now, 43_200, 1800), want, "{name}");
        }
    }

    #[test]
    fn reissue_is_rare_and_before_idle_expiry() {
        let s = session(None);
        assert!(!needs_reissue(&s, s.last_used + 179, 1800));
        assert!(needs_reissue(&s, s.last_used + 180, 1800));
        assert!(
            needs_reissue(&s, s.last_used + 1, 5),
            "small timeouts re-issue every second"
        );
        assert_eq!(remaining_lifetime(&s, s.issued_at + 200, 43_200), 43_000);
    }

    #[test]
    fn debug_and_session_hash_never_show_the_id() {
        let s = session(Some("carol"));
        let id = s.id.encoded();
        assert!(!format!("{s:?}").contains(&id));
        let tag = hex16(&session_hash(&s.id));
        assert_eq!(tag.len(), 16);
        assert!(tag
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(!id.contains(&tag));
        assert_ne!(session_hash(&s.id), session_hash(&SessionId([8; ID_LEN])));
        assert_ne!(session_hash(&s.id), value_hash(&s.id.0), "labels differ");
    }

    /// The hash is a plain function of the ID, stated independently here: SHA-256 over the
    /// label and the ID, first 8 bytes (what operators and scripts/revoke rely on).
    #[test]
    fn session_hash_is_sha256_of_label_and_id() {
        let id = SessionId([0x11; ID_LEN]);
        let mut h = Sha256::new();
        h.update(b"session-guard session tag");
        h.update([0x11u8; 16]);
        let want: Vec<String> = h
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex16(&session_hash(&id)), want.concat());
    }

    #[test]
    fn scope_client_and_bindings_round_trip_and_are_signed() {
        let k = key("k1", 1);
        let mut s = session(Some("dave"));
        s.bindings.clear();
        for i in 0..MAX_BINDINGS as u8 {
            assert!(!s.bind(s.id.binding(&[b'c', i], b"v")));
        }
        assert_eq!(s.bindings.len(), MAX_BINDINGS);
        let first = s.bindings[0];
        assert!(s.bind(s.id.binding(b"one more", b"v")), "oldest dropped");
        assert!(!s.bindings.contains(&first));
        assert!(
            !s.bind(s.id.binding(b"ONE MORE", b"w")),
            "same name replaced"
        );
        assert!(s.is_bound(b"one more", b"w") && !s.is_bound(b"one more", b"v"));
        assert!(s.unbind(b"One More") && !s.is_bound(b"one more", b"w"));
        assert!(!s.unbind(b"one more"));
        s.bind(s.id.binding(b"one more", b"v"));
        let v = encode(&s, NAME, &k).unwrap();
        assert!(v.len() <= 4096);
        let back = decode(v.as_bytes(), NAME.as_bytes(), std::slice::from_ref(&k)).unwrap();
        assert_eq!(back, s);
        assert_ne!(back.scope, scope_digest(b"other.example"));
        assert_eq!(
            s.id.binding(b"JSESSIONID", b"x"),
            s.id.binding(b"jsessionid", b"x")
        );
        assert_ne!(
            s.id.binding(b"a", b"x"),
            SessionId([9; ID_LEN]).binding(b"a", b"x")
        );
        assert_ne!(s.id.binding(b"a", b"x"), s.id.binding(b"a", b"y"));
        assert_ne!(s.id.binding(b"ab", b"x"), s.id.binding(b"a", b"bx"));
    }

    /// 0.1.0 values (version 1: no scope, client or bindings) still verify, marked legacy.
    #[test]
    fn version_1_values_decode_as_legacy() {
        let k = key("k1", 1);
        let mut payload = Vec::new();
        payload.extend_from_slice(&1_700_000_000u64.to_be_bytes());
        payload.extend_from_slice(&1_700_000_000u64.to_be_bytes());
        payload.extend_from_slice(&[7; ID_LEN]);
        payload.extend_from_slice(b"erin");
        let signed = format!("v1.k1.{}", URL_SAFE_NO_PAD.encode(&payload));
        let tag = mac_for(&k, NAME.as_bytes(), signed.as_bytes())
            .unwrap()
            .finalize()
            .into_bytes();
        let v = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag));
        let s = decode(v.as_bytes(), NAME.as_bytes(), std::slice::from_ref(&k)).unwrap();
        assert!(s.legacy);
        assert_eq!(
            (s.subject.as_deref(), s.id),
            (Some("erin"), SessionId([7; ID_LEN]))
        );
        assert_eq!((s.scope, s.bindings.len()), ([0; TAG_LEN], 0));
        let v2 = v.replacen("v1.", "v2.", 1);
        assert!(decode(v2.as_bytes(), NAME.as_bytes(), std::slice::from_ref(&k)).is_err());
    }

    #[test]
    fn subjects_must_be_printable_ascii_up_to_256() {
        assert!(valid_subject(b"alice@example.com"));
        assert!(valid_subject(&[b'a'; 256]));
        for bad in [
            &b""[..],
            &[b'a'; 257][..],
            b"tab\there",
            b"nl\n",
            b"\x7f",
            b"caf\xc3\xa9",
        ] {
            assert!(!valid_subject(bad), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn any_single_changed_byte_fails(pos in 0usize..200, delta in 1u8..=255, subject in "[a-z]{0,20}") {
            let k = key("k1", 3);
            let sub = (!subject.is_empty()).then_some(subject);
            let v = encode(&Session { subject: sub, ..session(None) }, NAME, &k).unwrap().into_bytes();
            let mut t = v.clone();
            let i = pos % t.len();
            t[i] = t[i].wrapping_add(delta);
            prop_assert!(decode(&t, NAME.as_bytes(), &[k]).is_err());
        }

        #[test]
        fn any_other_key_or_cookie_name_fails(fill in 0u8..=255, name in "[A-Za-z_-]{1,20}") {
            let k = key("k1", 3);
            let v = encode(&session(None), NAME, &k).unwrap();
            if fill != 3 {
                prop_assert_eq!(decode(v.as_bytes(), NAME.as_bytes(), &[key("k1", fill)]), Err(Invalid::Forged));
            }
            if name != NAME {
                prop_assert_eq!(decode(v.as_bytes(), name.as_bytes(), &[k]), Err(Invalid::Forged));
            }
        }

        #[test]
        fn minted_cookie_verifies_until_expiry(issued in 0u64..4_000_000_000, age in 0u64..100_000, idle in 1u64..5000, max in 1u64..100_000) {
            prop_assume!(idle <= max);
            let k = key("k1", 4);
            let s = Session::new(SessionId([9; ID_LEN]), issued, None);
            let v = encode(&s, NAME, &k).unwrap();
            let d = decode(v.as_bytes(), NAME.as_bytes(), &[k]).unwrap();
            let ok = check_age(&d, issued + age, max, idle).is_ok();
            prop_assert_eq!(ok, age < max && age <= idle);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes, NAME.as_bytes(), &[key("k1", 1)]);
        }
    }
}
