//! The mesh session cookie value: mint, sign, verify.
//!
//! Format (version 1), all ASCII, at most 4096 bytes:
//!
//! ```text
//! v1.<key id>.<payload>.<mac>
//! payload = base64url(issued_at u64 BE || last_used u64 BE || id 16 bytes || subject bytes)
//! mac     = base64url(HMAC-SHA256(key, u16 BE len(cookie name) || cookie name || "v1.<key id>.<payload>"))
//! ```
//!
//! The MAC covers the cookie's name (a value lifted into another cookie name fails), the key
//! id (a value cannot be re-attributed to another key) and every field. Base64 decoding is
//! canonical-only, so every changed character changes the signed bytes or fails to decode.

use crate::config::{Key, MAX_COOKIE_VALUE_LEN, MAX_SUBJECT_LEN};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

pub const ID_LEN: usize = 16;
const VERSION: &str = "v1";
const MAC_LEN: usize = 32;
const FIXED_PAYLOAD: usize = 8 + 8 + ID_LEN;
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
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub issued_at: u64,
    pub last_used: u64,
    pub subject: Option<String>,
}

impl Session {
    pub fn new(id: SessionId, now: u64, subject: Option<String>) -> Self {
        Session {
            id,
            issued_at: now,
            last_used: now,
            subject,
        }
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
/// session cannot be represented (subject too long), which callers prevent.
pub fn encode(session: &Session, cookie_name: &str, key: &Key) -> Option<String> {
    let subject = session.subject.as_deref().unwrap_or("");
    if !subject.is_empty() && !valid_subject(subject.as_bytes()) {
        return None;
    }
    let mut payload = Vec::with_capacity(FIXED_PAYLOAD + subject.len());
    payload.extend_from_slice(&session.issued_at.to_be_bytes());
    payload.extend_from_slice(&session.last_used.to_be_bytes());
    payload.extend_from_slice(&session.id.0);
    payload.extend_from_slice(subject.as_bytes());
    let mut out = String::with_capacity(96 + subject.len() * 4 / 3);
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

/// Verifies a cookie value's format and signature (not its age; see [`check_age`]).
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
    if version != VERSION.as_bytes() {
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
    let (fixed, subject) = payload
        .split_at_checked(FIXED_PAYLOAD)
        .ok_or(Invalid::Malformed)?;
    let (issued, rest) = fixed.split_at_checked(8).ok_or(Invalid::Malformed)?;
    let (last, id) = rest.split_at_checked(8).ok_or(Invalid::Malformed)?;
    let issued_at = u64::from_be_bytes(issued.try_into().map_err(|_| Invalid::Malformed)?);
    let last_used = u64::from_be_bytes(last.try_into().map_err(|_| Invalid::Malformed)?);
    let id: [u8; ID_LEN] = id.try_into().map_err(|_| Invalid::Malformed)?;
    let subject = if subject.is_empty() {
        None
    } else if valid_subject(subject) {
        Some(String::from_utf8(subject.to_vec()).map_err(|_| Invalid::Malformed)?)
    } else {
        return Err(Invalid::Malformed);
    };
    if last_used < issued_at {
        return Err(Invalid::Malformed);
    }
    Ok(Session {
        id: SessionId(id),
        issued_at,
        last_used,
        subject,
    })
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

/// A keyed, truncated hash naming a session in logs: correlatable across log lines,
/// useless for replay, and not reversible without the key.
pub fn log_tag(key: &Key, id: &SessionId) -> String {
    log_tag_bytes(key, &id.0)
}

/// The same keyed hash over arbitrary bytes: names a presented (invalid) cookie value in
/// logs, so repeated attempts correlate without the value ever being written.
pub fn log_tag_bytes(key: &Key, bytes: &[u8]) -> String {
    let Some(mac) = mac_for(key, b"session-guard log tag", bytes) else {
        return "-".to_string();
    };
    let tag = mac.finalize().into_bytes();
    tag.iter().take(6).map(|b| format!("{b:02x}")).collect()
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
        Session {
            id: SessionId([7; ID_LEN]),
            issued_at: 1_700_000_000,
            last_used: 1_700_000_100,
            subject: subject.map(str::to_string),
        }
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
            assert!(v.starts_with("v1.k1."));
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
                good.replacen("v1.k1.", "v1.k9.", 1).into_bytes(),
                Invalid::UnknownKey,
            ),
            (
                "unknown version",
                good.replacen("v1.", "v2.", 1).into_bytes(),
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
    fn debug_and_log_tag_never_show_the_id() {
        let s = session(Some("carol"));
        let id = s.id.encoded();
        assert!(!format!("{s:?}").contains(&id));
        let tag = log_tag(&key("k1", 1), &s.id);
        assert_eq!(tag.len(), 12);
        assert!(!id.contains(&tag));
        assert_ne!(tag, log_tag(&key("k1", 2), &s.id), "keyed");
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
