//! Device Bound Session Credentials (W3C DBSC): the wire formats and the proof check, pure.
//! The policy (`policy/dbsc.rs`) decides; this module parses, signs and verifies.
//!
//! STUB (API fixed by the lead; implementation in progress): see /work/dbsc-design.md.

use crate::config::Key;
use crate::token::{SessionId, TAG_LEN};

/// The short-lived bound cookie.
pub const TICKET_COOKIE: &str = "__Host-session-bound";
/// A device key's thumbprint: what the mesh cookie and the ticket carry.
pub type Thumbprint = [u8; TAG_LEN];
/// Registration challenges live this long.
pub const REGISTRATION_TTL_S: u64 = 300;
/// The signed expiry of a ticket exceeds its cookie's Max-Age by this much.
pub const TICKET_GRACE_S: u64 = 60;

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
    pub fn from_xy(_x: &[u8], _y: &[u8]) -> Option<Self> {
        None
    }
    pub fn thumbprint(&self) -> Thumbprint {
        [0; TAG_LEN]
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
#[derive(Debug)]
pub struct Proof<'a> {
    /// The `jwk` of the header (registration only).
    pub jwk: Option<DeviceKey>,
    /// The payload's `jti`: the challenge the browser signed.
    pub jti: Vec<u8>,
    signing_input: &'a [u8],
    signature: [u8; 64],
}

/// The token of `Secure-Session-Response` or `Sec-Secure-Session-Id`: bare (Chrome 148) or an
/// sf-string (`"..."`, the spec's ABNF). `None`: empty, oversized, or not a token.
pub fn header_token(_value: &[u8]) -> Option<&[u8]> {
    None
}

/// Parses a compact JWT; `registration` says whether the header must carry `jwk` (true) or
/// must not (false). No signature check here.
pub fn parse_proof(_jwt: &[u8], _registration: bool) -> Result<Proof<'_>, ProofError> {
    Err(ProofError::Malformed)
}

/// The one ECDSA verification (ES256, raw r‖s) of `proof` under `key`.
pub fn verify_proof(_key: &DeviceKey, _proof: &Proof<'_>) -> Result<(), ProofError> {
    Err(ProofError::Signature)
}

/// The `session_identifier`, signed with `key` (the signing key).
pub fn encode_id(_device: &DeviceKey, _key: &Key) -> String {
    String::new()
}

/// The device key from a `session_identifier`, if its MAC verifies under a key of the ring.
pub fn decode_id(_id: &[u8], _keys: &[Key]) -> Option<DeviceKey> {
    None
}

/// What a challenge is bound to.
#[derive(Debug, Clone, Copy)]
pub enum Bound<'a> {
    /// A registration challenge: the mesh session it was offered to.
    Registration(&'a SessionId),
    /// A refresh challenge: the device key's thumbprint.
    Refresh(&'a Thumbprint),
}

/// A fresh challenge, MACed with the signing key.
pub fn challenge(_bound: Bound<'_>, _key: &Key, _now: u64) -> String {
    String::new()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeError {
    /// No key of the ring made it for this binding, or it is not a challenge at all.
    Forged,
    /// Older than `ttl_s`, or from the future.
    Stale,
}

/// Checks a challenge (the `jti`) against the ring, for `bound`, at most `ttl_s` old.
pub fn check_challenge(
    _jti: &[u8],
    _bound: Bound<'_>,
    _keys: &[Key],
    _now: u64,
    _ttl_s: u64,
) -> Result<(), ChallengeError> {
    Err(ChallengeError::Forged)
}

/// The ticket cookie's value: valid until `exp` (unix seconds), for `thumbprint`.
pub fn encode_ticket(_thumbprint: &Thumbprint, _exp: u64, _key: &Key) -> String {
    String::new()
}

/// The thumbprint a ticket is valid for, if its MAC verifies and it has not expired.
pub fn check_ticket(_value: &[u8], _keys: &[Key], _now: u64) -> Option<Thumbprint> {
    None
}
