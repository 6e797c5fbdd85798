//! Device Bound Session Credentials (W3C DBSC): the wire formats and the proof check, pure.
//! The policy (`policy/dbsc.rs`) decides; this module parses, signs and verifies.
//!
//! Formats (B64 = base64url without padding, canonical decoding only):
//!
//! ```text
//! thumbprint         = SHA-256("session-guard dbsc key\0" || x || y)[..16]
//! session_identifier = d1.<kid>.<B64(x || y)>.<B64(tag)>
//!     tag = HMAC(key[kid], "session-guard dbsc id\0" || "d1.<kid>.<B64(x || y)>")[..16]
//! challenge          = <t>.<B64(tag)>          t: unix seconds, 1 to 20 digits
//!     tag = HMAC(key, "session-guard dbsc challenge\0" || kind || bound || t u64 BE)[..16]
//!     kind 'r' (registration, bound = the mesh session ID), 'f' (refresh, bound = thumbprint)
//! ticket             = t1.<kid>.<B64(exp u64 BE || thumbprint)>.<B64(tag)>
//!     tag = HMAC(key[kid], "session-guard dbsc ticket\0" || "t1.<kid>.<payload>")[..16]
//! proof              = compact JWS, ES256 (raw r || s), header typ "dbsc+jwt"
//! ```
//!
//! Every truncated tag is compared in constant time (`Mac::verify_truncated_left`), at its
//! full 16 bytes only. A `Debug` here never prints a key, a tag, a challenge or an ID.

mod jwt;
mod tokens;

pub use jwt::{parse_proof, verify_proof};
pub use tokens::{
    challenge, check_challenge, check_ticket, decode_id, encode_id, encode_ticket, open_ticket,
};

use crate::config::Key;
use crate::token::{SessionId, TAG_LEN};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::Mac as _;
use p256::ecdsa::VerifyingKey;
use p256::{EncodedPoint, FieldBytes};
use sha2::{Digest, Sha256};

/// The short-lived bound cookie.
pub const TICKET_COOKIE: &str = "__Host-session-bound";
/// A device key's thumbprint: what the mesh cookie and the ticket carry.
pub type Thumbprint = [u8; TAG_LEN];
/// Registration challenges live this long.
pub const REGISTRATION_TTL_S: u64 = 300;
/// The signed expiry of a ticket exceeds its cookie's Max-Age by this much.
pub const TICKET_GRACE_S: u64 = 60;

/// The longest `Secure-Session-Response` / `Sec-Secure-Session-Id` value taken.
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// The length of a P-256 coordinate.
const COORD_LEN: usize = 32;

/// A P-256 public key, on the curve (checked when decoded).
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceKey {
    x: [u8; 32],
    y: [u8; 32],
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceKey")
    }
}

impl DeviceKey {
    /// From affine coordinates; `None` unless the point is on P-256.
    pub fn from_xy(x: &[u8], y: &[u8]) -> Option<Self> {
        let key = DeviceKey {
            x: x.try_into().ok()?,
            y: y.try_into().ok()?,
        };
        key.verifying_key().map(|_| key)
    }

    pub fn thumbprint(&self) -> Thumbprint {
        let mut h = Sha256::new();
        h.update(b"session-guard dbsc key\0");
        h.update(self.x);
        h.update(self.y);
        prefix(&h.finalize())
    }

    /// The point as p256 takes it: coordinates below the field's modulus, on the curve (the
    /// uncompressed form cannot name the identity).
    fn verifying_key(&self) -> Option<VerifyingKey> {
        let point = EncodedPoint::from_affine_coordinates(
            &FieldBytes::from(self.x),
            &FieldBytes::from(self.y),
            false,
        );
        VerifyingKey::from_encoded_point(&point).ok()
    }

    /// `x || y`, what the session identifier carries.
    fn xy(&self) -> [u8; 2 * COORD_LEN] {
        let mut out = [0u8; 2 * COORD_LEN];
        let (x, y) = out.split_at_mut(COORD_LEN);
        x.copy_from_slice(&self.x);
        y.copy_from_slice(&self.y);
        out
    }
}

/// Why a proof (the JWT) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofError {
    /// Not a compact JWT, bad base64 or JSON, missing `jti`, oversized.
    Malformed,
    /// `alg` other than ES256, `typ` other than `dbsc+jwt`, `jwk` missing (start) or present
    /// (refresh), `kty`/`crv` wrong, a point not on the curve.
    Header,
    /// The ECDSA signature does not verify.
    Signature,
}

/// A parsed, not yet verified proof. Borrowed from the header value.
pub struct Proof<'a> {
    /// The `jwk` of the header (registration only).
    pub jwk: Option<DeviceKey>,
    /// The payload's `jti`: the challenge the browser signed.
    pub jti: Vec<u8>,
    signing_input: &'a [u8],
    signature: [u8; 64],
}

/// The `jti` is a challenge (it holds a tag), and the signature is the client's: neither is
/// printed.
impl std::fmt::Debug for Proof<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proof")
            .field("jwk", &self.jwk)
            .finish_non_exhaustive()
    }
}

/// The token of `Secure-Session-Response` or `Sec-Secure-Session-Id`: bare (Chrome 148) or an
/// sf-string (`"..."`, the spec's ABNF). `None`: empty, oversized, or not a token.
///
/// Every token this module takes (a compact JWT, a session identifier) is base64url and `.`
/// only, so that is all the content may hold: an sf-string escape (`\`) never occurs in one.
pub fn header_token(value: &[u8]) -> Option<&[u8]> {
    if value.len() > MAX_TOKEN_LEN {
        return None;
    }
    let value = trim_ows(value);
    let token = match value.strip_prefix(b"\"") {
        Some(quoted) => quoted.strip_suffix(b"\"")?,
        None => value,
    };
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    (!token.is_empty() && token.iter().all(allowed)).then_some(token)
}

/// Without the optional whitespace (SP, HTAB) HTTP allows around a field value.
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// What a challenge is bound to.
#[derive(Clone, Copy)]
pub enum Bound<'a> {
    /// A registration challenge: the mesh session it was offered to.
    Registration(&'a SessionId),
    /// A refresh challenge: the device key's thumbprint.
    Refresh(&'a Thumbprint),
}

/// Neither the session ID nor the thumbprint is printed.
impl std::fmt::Debug for Bound<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Bound::Registration(_) => "Registration(<redacted>)",
            Bound::Refresh(_) => "Refresh(<redacted>)",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeError {
    /// No key of the ring made it for this binding, or it is not a challenge at all.
    Forged,
    /// Older than `ttl_s`, or from the future.
    Stale,
}

/// The first `N` bytes of a digest.
fn prefix<const N: usize>(digest: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (o, d) in out.iter_mut().zip(digest) {
        *o = *d;
    }
    out
}

/// The truncated HMAC of the concatenated `parts` under `key`. `Key::mac` is `None` only for
/// a key HMAC refuses, which no key length is: the zero tag then verifies nowhere.
fn tag(key: &Key, parts: &[&[u8]]) -> [u8; TAG_LEN] {
    key.mac().map_or([0; TAG_LEN], |mut mac| {
        for p in parts {
            mac.update(p);
        }
        prefix(&mac.finalize().into_bytes())
    })
}

/// Whether `tag` is the truncated HMAC of `parts` under `key`, compared in constant time.
fn verify_tag(key: &Key, parts: &[&[u8]], tag: &[u8; TAG_LEN]) -> bool {
    key.mac().is_some_and(|mut mac| {
        for p in parts {
            mac.update(p);
        }
        mac.verify_truncated_left(tag).is_ok()
    })
}

/// Exactly `N` bytes from their canonical unpadded base64url form.
fn b64_array<const N: usize>(encoded: &[u8]) -> Option<[u8; N]> {
    if encoded.len() != (4 * N).div_ceil(3) {
        return None;
    }
    URL_SAFE_NO_PAD.decode(encoded).ok()?.try_into().ok()
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests;
