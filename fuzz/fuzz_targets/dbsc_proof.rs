//! The DBSC inputs a client controls: header tokens, the proof JWT (both modes), the session
//! identifier, the ticket cookie and the challenge. Properties: any bytes give a value or a
//! refusal, never a panic; whatever is accepted is what this module would have made (an
//! identifier or a ticket re-encodes to the same bytes, a proof's `jwk` is there exactly at
//! registration), and a header token is a part of the value.
//!
//! The first byte picks the shape: raw bytes, or three NUL-separated pieces base64url-encoded
//! into a compact JWT so that the JSON reader behind the base64 is reached.
#![no_main]
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use session_guard::config::{Key, Secret};
use session_guard::dbsc::{
    check_challenge, check_ticket, decode_id, encode_id, encode_ticket, header_token, parse_proof,
    verify_proof, Bound,
};
use session_guard::token::SessionId;

const NOW: u64 = 1_800_000_000;

fn proofs(jwt: &[u8]) {
    for registration in [true, false] {
        if let Ok(proof) = parse_proof(jwt, registration) {
            assert_eq!(proof.jwk.is_some(), registration);
            assert!(proof.jti.len() <= 256);
            if let Some(key) = &proof.jwk {
                let _ = verify_proof(key, &proof);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (shape, rest) = data.split_first().unwrap_or((&0, &[]));
    let key = Key::new("k1", Secret::new(vec![7; 32]));
    let ring = [key.clone()];
    if shape & 1 == 1 {
        let mut pieces = rest.splitn(3, |&b| b == 0);
        let jwt: Vec<String> = (0..3)
            .map(|_| URL_SAFE_NO_PAD.encode(pieces.next().unwrap_or(&[])))
            .collect();
        proofs(jwt.join(".").as_bytes());
        return;
    }
    if let Some(token) = header_token(rest) {
        assert!(!token.is_empty() && token.len() <= rest.len().min(8 * 1024));
        proofs(token);
    }
    proofs(rest);
    if let Some(device) = decode_id(rest, &ring) {
        assert_eq!(encode_id(&device, &key).as_bytes(), rest);
    }
    if let Some(thumbprint) = check_ticket(rest, &ring, NOW) {
        // Valid now, so valid earlier: its exp lies ahead; and it is one this ring made.
        assert_eq!(check_ticket(rest, &ring, 0), Some(thumbprint));
        let foreign = [Key::new("k1", Secret::new(vec![8; 32]))];
        assert_eq!(check_ticket(rest, &foreign, 0), None);
    }
    // What the ring makes, it takes.
    let thumbprint: [u8; 16] = std::array::from_fn(|i| rest.get(i).copied().unwrap_or(0));
    let ticket = encode_ticket(&thumbprint, &[1; 8], NOW + 1, &key);
    assert_eq!(
        check_ticket(ticket.as_bytes(), &ring, NOW),
        Some(thumbprint)
    );
    let ttl = u64::from(shape >> 1) * 60;
    let _ = check_challenge(rest, Bound::Refresh(&thumbprint), &ring, NOW, ttl);
    let _ = check_challenge(
        rest,
        Bound::Registration(&SessionId([0; 16])),
        &ring,
        NOW,
        ttl,
    );
});
