//! The proof: a compact JWS (`dbsc+jwt`, ES256), parsed on bytes and verified once.

use super::{b64_array, DeviceKey, Proof, ProofError, COORD_LEN, MAX_TOKEN_LEN};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::Signature;
use serde_json::{Map, Value};

/// The encoded header: Chrome's, with its `jwk`, is about 250 characters.
const MAX_HEADER_B64: usize = 1024;
/// The encoded payload: a `jti` and, when the registration header asked for one, an
/// `authorization` the browser copies.
const MAX_PAYLOAD_B64: usize = 6 * 1024;
/// Longer than any challenge (20 digits, a dot, 22 characters of tag).
const MAX_JTI_LEN: usize = 256;
const SIGNATURE_LEN: usize = 64;

/// Parses a compact JWT; `registration` says whether the header must carry `jwk` (true) or
/// must not (false). No signature check here.
pub fn parse_proof(jwt: &[u8], registration: bool) -> Result<Proof<'_>, ProofError> {
    if jwt.len() > MAX_TOKEN_LEN {
        return Err(ProofError::Malformed);
    }
    let mut parts = jwt.split(|&b| b == b'.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ProofError::Malformed);
    };
    if header.len() > MAX_HEADER_B64 || payload.len() > MAX_PAYLOAD_B64 {
        return Err(ProofError::Malformed);
    }
    let jwk = check_header(&json_object(header)?, registration)?;
    let jti = jti(&json_object(payload)?)?;
    let signature = b64_array::<SIGNATURE_LEN>(signature).ok_or(ProofError::Malformed)?;
    let signing_input = jwt
        .get(..header.len() + 1 + payload.len())
        .ok_or(ProofError::Malformed)?;
    Ok(Proof {
        jwk,
        jti,
        signing_input,
        signature,
    })
}

/// A base64url JSON object.
fn json_object(b64: &[u8]) -> Result<Map<String, Value>, ProofError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| ProofError::Malformed)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| ProofError::Malformed)?;
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ProofError::Malformed),
    }
}

/// ES256 and `dbsc+jwt` (a media type: ASCII case-insensitive), no `crit` extension (none is
/// understood here, RFC 7515 §4.1.11), and the `jwk` exactly when registering.
fn check_header(
    header: &Map<String, Value>,
    registration: bool,
) -> Result<Option<DeviceKey>, ProofError> {
    let alg = header.get("alg").and_then(Value::as_str);
    let typ = header.get("typ").and_then(Value::as_str);
    if alg != Some("ES256")
        || !typ.is_some_and(|t| t.eq_ignore_ascii_case("dbsc+jwt"))
        || header.contains_key("crit")
    {
        return Err(ProofError::Header);
    }
    match (header.get("jwk"), registration) {
        (None, false) => Ok(None),
        (Some(jwk), true) => device_key(jwk).map(Some).ok_or(ProofError::Header),
        _ => Err(ProofError::Header),
    }
}

/// A public EC JWK on P-256 (RFC 7518 §6.2.1): coordinates of exactly 32 bytes, on the curve.
fn device_key(jwk: &Value) -> Option<DeviceKey> {
    let jwk = jwk.as_object()?;
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    if member("kty")? != "EC" || member("crv")? != "P-256" {
        return None;
    }
    let x = b64_array::<COORD_LEN>(member("x")?.as_bytes())?;
    let y = b64_array::<COORD_LEN>(member("y")?.as_bytes())?;
    DeviceKey::from_xy(&x, &y)
}

/// The payload's `jti`: a string, bounded. Other members (`authorization`) are not ours.
fn jti(payload: &Map<String, Value>) -> Result<Vec<u8>, ProofError> {
    match payload.get("jti").and_then(Value::as_str) {
        Some(jti) if jti.len() <= MAX_JTI_LEN => Ok(jti.as_bytes().to_vec()),
        _ => Err(ProofError::Malformed),
    }
}

/// The one ECDSA verification (ES256, raw r‖s) of `proof` under `key`. A high `s` is
/// accepted, as p256 does: browsers do not normalize it.
pub fn verify_proof(key: &DeviceKey, proof: &Proof<'_>) -> Result<(), ProofError> {
    let verifying_key = key.verifying_key().ok_or(ProofError::Signature)?;
    let signature = Signature::from_slice(&proof.signature).map_err(|_| ProofError::Signature)?;
    verifying_key
        .verify(proof.signing_input, &signature)
        .map_err(|_| ProofError::Signature)
}
