//! The MACed values: the session identifier, the challenges and the ticket.

use super::{b64_array, tag, verify_tag, Bound, ChallengeError, DeviceKey, Thumbprint, COORD_LEN};
use crate::config::Key;
use crate::token::TAG_LEN;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

const ID_VERSION: &str = "d1";
const TICKET_VERSION: &str = "t1";
const ID_DOMAIN: &[u8] = b"session-guard dbsc id\0";
const CHALLENGE_DOMAIN: &[u8] = b"session-guard dbsc challenge\0";
const TICKET_DOMAIN: &[u8] = b"session-guard dbsc ticket\0";
/// Longer than any identifier or ticket this module makes (a key id has at most 32 bytes).
const MAX_VALUE_LEN: usize = 256;
/// A challenge's time may be this far ahead of ours: clock skew between proxies sharing keys.
const MAX_FUTURE_SKEW_S: u64 = 300;
/// `u64::MAX` has 20 decimal digits.
const MAX_TIME_DIGITS: usize = 20;
/// exp, thumbprint, the hash of the session it was issued to.
const TICKET_PAYLOAD_LEN: usize = 8 + TAG_LEN + 8;

/// `<version>.<kid>.<B64(payload)>`, tagged with `key` under `domain`, then `.<B64(tag)>`.
fn sign(version: &str, key: &Key, payload: &[u8], domain: &[u8]) -> String {
    let mut out = String::with_capacity(MAX_VALUE_LEN);
    out.push_str(version);
    out.push('.');
    out.push_str(&key.id);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut out);
    let t = tag(key, &[domain, out.as_bytes()]);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(t, &mut out);
    out
}

/// The payload of a value [`sign`] made with a key of `keys`: `N` bytes, once its tag
/// verifies (nothing is decoded before).
fn open<const N: usize>(
    value: &[u8],
    version: &str,
    keys: &[Key],
    domain: &[u8],
) -> Option<[u8; N]> {
    if value.len() > MAX_VALUE_LEN {
        return None;
    }
    let mut parts = value.split(|&b| b == b'.');
    let (Some(v), Some(kid), Some(payload), Some(tag_b64), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if v != version.as_bytes() {
        return None;
    }
    let key = keys.iter().find(|k| k.id.as_bytes() == kid)?;
    let tag = b64_array::<TAG_LEN>(tag_b64)?;
    let signed = value.get(..v.len() + 1 + kid.len() + 1 + payload.len())?;
    if !verify_tag(key, &[domain, signed], &tag) {
        return None;
    }
    b64_array(payload)
}

/// The `session_identifier`, signed with `key` (the signing key).
pub fn encode_id(device: &DeviceKey, key: &Key) -> String {
    sign(ID_VERSION, key, &device.xy(), ID_DOMAIN)
}

/// The device key from a `session_identifier`, if its MAC verifies under a key of the ring.
pub fn decode_id(id: &[u8], keys: &[Key]) -> Option<DeviceKey> {
    let xy: [u8; 2 * COORD_LEN] = open(id, ID_VERSION, keys, ID_DOMAIN)?;
    let (x, y) = xy.split_at_checked(COORD_LEN)?;
    DeviceKey::from_xy(x, y)
}

/// The tag of a challenge made by `key` at `t`.
fn challenge_parts<'a>(bound: &Bound<'a>, t: &'a [u8; 8]) -> [&'a [u8]; 4] {
    let (kind, bytes): (&[u8], &[u8]) = match bound {
        Bound::Registration(id) => (b"r", &id.0),
        Bound::Refresh(thumbprint) => (b"f", &thumbprint[..]),
    };
    [CHALLENGE_DOMAIN, kind, bytes, t]
}

/// A fresh challenge, MACed with the signing key.
pub fn challenge(bound: Bound<'_>, key: &Key, now: u64) -> String {
    let t = now.to_be_bytes();
    let tag = tag(key, &challenge_parts(&bound, &t));
    let mut out = now.to_string();
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, &mut out);
    out
}

/// Checks a challenge (the `jti`) against the ring, for `bound`, at most `ttl_s` old.
///
/// The tag first: a challenge no key made, or made for another binding or kind, is `Forged`
/// whatever its time; only an authentic one can be `Stale`.
pub fn check_challenge(
    jti: &[u8],
    bound: Bound<'_>,
    keys: &[Key],
    now: u64,
    ttl_s: u64,
) -> Result<(), ChallengeError> {
    let (t, tag_b64) = split_once(jti, b'.').ok_or(ChallengeError::Forged)?;
    let t = parse_time(t).ok_or(ChallengeError::Forged)?;
    let tag = b64_array::<TAG_LEN>(tag_b64).ok_or(ChallengeError::Forged)?;
    let t_be = t.to_be_bytes();
    let parts = challenge_parts(&bound, &t_be);
    if !keys.iter().any(|k| verify_tag(k, &parts, &tag)) {
        return Err(ChallengeError::Forged);
    }
    let not_future = t <= now.saturating_add(MAX_FUTURE_SKEW_S);
    let young = now.checked_sub(t).is_none_or(|age| age <= ttl_s);
    if not_future && young {
        Ok(())
    } else {
        Err(ChallengeError::Stale)
    }
}

fn split_once(v: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let at = v.iter().position(|&b| b == sep)?;
    let (head, tail) = v.split_at_checked(at)?;
    Some((head, tail.get(1..)?))
}

/// Unix seconds as [`challenge`] writes them: 1 to 20 ASCII digits, no leading zero, at most
/// `u64::MAX`.
fn parse_time(digits: &[u8]) -> Option<u64> {
    let leading_zero = digits.len() > 1 && digits.first() == Some(&b'0');
    if digits.is_empty() || digits.len() > MAX_TIME_DIGITS || leading_zero {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        let d = d.is_ascii_digit().then(|| u64::from(d - b'0'))?;
        acc.checked_mul(10)?.checked_add(d)
    })
}

/// The ticket cookie's value: valid until `exp` (unix seconds), for `thumbprint`, issued to
/// the session whose hash (`token::session_hash`) is `session`.
pub fn encode_ticket(thumbprint: &Thumbprint, session: &[u8; 8], exp: u64, key: &Key) -> String {
    let mut payload = [0u8; TICKET_PAYLOAD_LEN];
    let (e, rest) = payload.split_at_mut(8);
    let (t, s) = rest.split_at_mut(TAG_LEN);
    e.copy_from_slice(&exp.to_be_bytes());
    t.copy_from_slice(thumbprint);
    s.copy_from_slice(session);
    sign(TICKET_VERSION, key, &payload, TICKET_DOMAIN)
}

/// The thumbprint a ticket is valid for, if its MAC verifies and it has not expired.
pub fn check_ticket(value: &[u8], keys: &[Key], now: u64) -> Option<Thumbprint> {
    open_ticket(value, keys, now).map(|(t, _)| t)
}

/// The thumbprint and the hash of the session it was issued to, if its MAC verifies and it has
/// not expired.
pub fn open_ticket(value: &[u8], keys: &[Key], now: u64) -> Option<(Thumbprint, [u8; 8])> {
    let payload: [u8; TICKET_PAYLOAD_LEN] = open(value, TICKET_VERSION, keys, TICKET_DOMAIN)?;
    let (exp, rest) = payload.split_at_checked(8)?;
    let (thumbprint, session) = rest.split_at_checked(TAG_LEN)?;
    let exp = u64::from_be_bytes(exp.try_into().ok()?);
    (exp > now).then_some((thumbprint.try_into().ok()?, session.try_into().ok()?))
}
