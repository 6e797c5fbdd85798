use super::*;
use crate::config::Secret;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use proptest::prelude::*;

const NOW: u64 = 1_800_000_000;
const REFRESH_TTL: u64 = 900 + TICKET_GRACE_S;

fn key(id: &str, byte: u8) -> Key {
    Key::new(id, Secret::new(vec![byte; 32]))
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A fixed secret scalar: the browser's key in these tests.
fn browser() -> SigningKey {
    SigningKey::from_bytes(&FieldBytes::from([0x5a; 32])).unwrap()
}

fn thief() -> SigningKey {
    SigningKey::from_bytes(&FieldBytes::from([0x3c; 32])).unwrap()
}

fn xy(sk: &SigningKey) -> ([u8; 32], [u8; 32]) {
    let point = sk.verifying_key().to_encoded_point(false);
    (
        point.x().unwrap()[..].try_into().unwrap(),
        point.y().unwrap()[..].try_into().unwrap(),
    )
}

fn device(sk: &SigningKey) -> DeviceKey {
    let (x, y) = xy(sk);
    DeviceKey::from_xy(&x, &y).unwrap()
}

fn jwk_json(sk: &SigningKey) -> String {
    let (x, y) = xy(sk);
    format!(
        r#"{{"kty":"EC","crv":"P-256","x":"{}","y":"{}"}}"#,
        b64(x),
        b64(y)
    )
}

/// A compact JWS over `header` and `payload` (JSON texts), ES256 by `sk`.
fn jws(header: &str, payload: &str, sk: &SigningKey) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig: Signature = sk.sign(input.as_bytes());
    format!("{input}.{}", b64(sig.to_bytes()))
}

fn registration_jwt(sk: &SigningKey, jti: &str) -> String {
    let header = format!(
        r#"{{"alg":"ES256","typ":"dbsc+jwt","jwk":{}}}"#,
        jwk_json(sk)
    );
    jws(&header, &format!(r#"{{"jti":"{jti}"}}"#), sk)
}

fn refresh_jwt(sk: &SigningKey, jti: &str) -> String {
    jws(
        r#"{"alg":"ES256","typ":"dbsc+jwt"}"#,
        &format!(r#"{{"jti":"{jti}"}}"#),
        sk,
    )
}

// ---- device key, thumbprint -------------------------------------------------------------

#[test]
fn device_key_is_checked_on_the_curve() {
    let (x, mut y) = xy(&browser());
    assert!(DeviceKey::from_xy(&x, &y).is_some());
    y[31] ^= 1;
    assert!(DeviceKey::from_xy(&x, &y).is_none(), "off the curve");
    assert!(DeviceKey::from_xy(&x[..31], &y).is_none());
    assert!(DeviceKey::from_xy(&x, &[y.as_slice(), &[0]].concat()).is_none());
    assert!(
        DeviceKey::from_xy(&[0xff; 32], &[0xff; 32]).is_none(),
        ">= p"
    );
    assert!(DeviceKey::from_xy(&[0; 32], &[0; 32]).is_none());
}

#[test]
fn thumbprint_is_the_documented_digest_and_differs_per_key() {
    let (x, y) = xy(&browser());
    let mut h = Sha256::new();
    h.update(b"session-guard dbsc key\0");
    h.update(x);
    h.update(y);
    let want: [u8; 16] = h.finalize()[..16].try_into().unwrap();
    assert_eq!(device(&browser()).thumbprint(), want);
    assert_ne!(device(&thief()).thumbprint(), want);
}

// ---- header tokens ----------------------------------------------------------------------

#[test]
fn header_token_takes_bare_and_sf_string_forms() {
    assert_eq!(header_token(b"abc.DEF-_1"), Some(&b"abc.DEF-_1"[..]));
    assert_eq!(header_token(b"\"abc.DEF-_1\""), Some(&b"abc.DEF-_1"[..]));
    assert_eq!(header_token(b" \t\"abc\" "), Some(&b"abc"[..]));
    assert_eq!(header_token(b"  abc\t"), Some(&b"abc"[..]));
    let longest = vec![b'a'; 8 * 1024];
    assert_eq!(header_token(&longest), Some(&longest[..]));
}

#[test]
fn header_token_refuses_everything_else() {
    for bad in [
        &b""[..],
        b"  ",
        b"\"\"",
        b"\"",
        b"\"abc",
        b"abc\"",
        b"\"a\\\"b\"",
        b"a b",
        b"a,b",
        b"\"abc\";x=1",
        b"a=b",
        b"a+b/c",
        b"\xc3\xa9",
        b"a\nb",
    ] {
        assert_eq!(
            header_token(bad),
            None,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(header_token(&vec![b'a'; 8 * 1024 + 1]), None);
}

// ---- session identifier -----------------------------------------------------------------

#[test]
fn id_round_trips_and_has_the_documented_form() {
    let k1 = key("k1", 1);
    let dev = device(&browser());
    let id = encode_id(&dev, &k1);
    let parts: Vec<&str> = id.split('.').collect();
    assert_eq!(
        (parts[0], parts[1], parts[2].len(), parts[3].len()),
        ("d1", "k1", 86, 22)
    );
    let mut mac = k1.mac().unwrap();
    mac.update(b"session-guard dbsc id\0");
    mac.update(&id.as_bytes()[..id.len() - 23]);
    assert_eq!(parts[3], b64(&mac.finalize().into_bytes()[..16]));
    assert_eq!(decode_id(id.as_bytes(), &[key("k0", 0), k1]), Some(dev));
}

#[test]
fn id_refused_when_tampered_foreign_or_its_key_removed() {
    let k1 = key("k1", 1);
    let id = encode_id(&device(&browser()), &k1);
    assert_eq!(
        decode_id(id.as_bytes(), &[key("k2", 2)]),
        None,
        "removed key"
    );
    assert_eq!(
        decode_id(id.as_bytes(), &[key("k1", 9)]),
        None,
        "other secret"
    );
    assert_eq!(decode_id(id.as_bytes(), &[]), None);
    for i in 0..id.len() {
        let mut bad = id.clone().into_bytes();
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        assert_eq!(decode_id(&bad, std::slice::from_ref(&k1)), None, "byte {i}");
    }
    for n in 0..id.len() {
        assert_eq!(
            decode_id(&id.as_bytes()[..n], std::slice::from_ref(&k1)),
            None
        );
    }
    assert_eq!(
        decode_id(format!("{id}.x").as_bytes(), std::slice::from_ref(&k1)),
        None
    );
    assert_eq!(
        decode_id(format!("\"{id}\"").as_bytes(), std::slice::from_ref(&k1)),
        None
    );
    let swapped = id.replacen("d1.", "t1.", 1);
    assert_eq!(decode_id(swapped.as_bytes(), &[k1]), None);
}

#[test]
fn a_ticket_is_not_an_id_nor_an_id_a_ticket() {
    // Same key, same layout: the domains and versions keep them apart.
    let k1 = key("k1", 1);
    let ticket = encode_ticket(&[7; 16], &[1; 8], NOW + 100, &k1);
    assert_eq!(
        decode_id(ticket.as_bytes(), std::slice::from_ref(&k1)),
        None
    );
    let id = encode_id(&device(&browser()), &k1);
    assert_eq!(check_ticket(id.as_bytes(), &[k1], 0), None);
}

// ---- challenges -------------------------------------------------------------------------

#[test]
fn challenge_round_trips_for_both_kinds() {
    let k1 = key("k1", 1);
    let sid = SessionId([3; 16]);
    let thumb = device(&browser()).thumbprint();
    let r = challenge(Bound::Registration(&sid), &k1, NOW);
    let f = challenge(Bound::Refresh(&thumb), &k1, NOW);
    assert!(r.starts_with("1800000000.") && r.len() == 11 + 22, "{r}");
    let ring = [key("k0", 0), k1];
    assert_eq!(
        check_challenge(
            r.as_bytes(),
            Bound::Registration(&sid),
            &ring,
            NOW,
            REGISTRATION_TTL_S
        ),
        Ok(())
    );
    assert_eq!(
        check_challenge(
            f.as_bytes(),
            Bound::Refresh(&thumb),
            &ring,
            NOW,
            REFRESH_TTL
        ),
        Ok(())
    );
}

#[test]
fn challenge_for_another_binding_or_kind_is_forged() {
    let k1 = key("k1", 1);
    let sid = SessionId([3; 16]);
    let same_bytes: Thumbprint = [3; 16];
    let r = challenge(Bound::Registration(&sid), &k1, NOW);
    let check =
        |b: Bound<'_>| check_challenge(r.as_bytes(), b, std::slice::from_ref(&k1), NOW, 1000);
    assert_eq!(check(Bound::Registration(&sid)), Ok(()));
    assert_eq!(
        check(Bound::Refresh(&same_bytes)),
        Err(ChallengeError::Forged),
        "kind"
    );
    assert_eq!(
        check(Bound::Registration(&SessionId([4; 16]))),
        Err(ChallengeError::Forged)
    );
    let f = challenge(Bound::Refresh(&same_bytes), &k1, NOW);
    let f_as_r = check_challenge(f.as_bytes(), Bound::Registration(&sid), &[k1], NOW, 1000);
    assert_eq!(f_as_r, Err(ChallengeError::Forged));
}

#[test]
fn challenge_age_limits() {
    let k1 = key("k1", 1);
    let thumb = [9; 16];
    let c = challenge(Bound::Refresh(&thumb), &k1, NOW);
    let at = |now: u64, ttl: u64| {
        check_challenge(
            c.as_bytes(),
            Bound::Refresh(&thumb),
            std::slice::from_ref(&k1),
            now,
            ttl,
        )
    };
    assert_eq!(at(NOW + 300, 300), Ok(()));
    assert_eq!(at(NOW + 301, 300), Err(ChallengeError::Stale), "expired");
    assert_eq!(at(NOW - 300, 300), Ok(()), "within the skew");
    assert_eq!(
        at(NOW - 301, 300),
        Err(ChallengeError::Stale),
        "from the future"
    );
    assert_eq!(at(NOW, 0), Ok(()));
    let end = challenge(Bound::Refresh(&thumb), &k1, u64::MAX);
    let at_end = check_challenge(
        end.as_bytes(),
        Bound::Refresh(&thumb),
        std::slice::from_ref(&k1),
        u64::MAX,
        0,
    );
    assert_eq!(at_end, Ok(()));
    let at_zero = check_challenge(end.as_bytes(), Bound::Refresh(&thumb), &[k1], 0, u64::MAX);
    assert_eq!(at_zero, Err(ChallengeError::Stale));
}

#[test]
fn challenge_under_another_or_removed_key_is_forged() {
    let (k1, k2) = (key("k1", 1), key("k2", 2));
    let thumb = [9; 16];
    let c = challenge(Bound::Refresh(&thumb), &k1, NOW);
    let with = |ring: &[Key]| check_challenge(c.as_bytes(), Bound::Refresh(&thumb), ring, NOW, 60);
    assert_eq!(
        with(&[k2.clone(), k1.clone()]),
        Ok(()),
        "rotation: still in the ring"
    );
    assert_eq!(with(&[k2]), Err(ChallengeError::Forged), "removed");
    assert_eq!(
        with(&[key("k1", 7)]),
        Err(ChallengeError::Forged),
        "same id, other secret"
    );
    assert_eq!(with(&[]), Err(ChallengeError::Forged));
    // Stale only for an authentic tag: an old forgery is still a forgery.
    let old = check_challenge(
        c.as_bytes(),
        Bound::Refresh(&thumb),
        &[key("k9", 9)],
        NOW + 10_000,
        60,
    );
    assert_eq!(old, Err(ChallengeError::Forged));
}

#[test]
fn challenge_garbage_is_forged() {
    let k1 = key("k1", 1);
    let thumb = [9; 16];
    let c = challenge(Bound::Refresh(&thumb), &k1, NOW);
    let (t, tag) = c.split_once('.').unwrap();
    let tampered_t = format!("{}.{tag}", NOW + 1);
    for bad in [
        String::new(),
        ".".into(),
        t.into(),
        format!("{t}."),
        format!(".{tag}"),
        format!("0{t}.{tag}"),
        format!("+{t}.{tag}"),
        format!("{t}.{tag}A"),
        format!("{t}.{}", &tag[..21]),
        format!("{t}.{tag}.x"),
        format!("{t}.{tag}="),
        tampered_t,
        format!("18446744073709551616.{tag}"),
        format!("{}.{tag}", "9".repeat(21)),
        format!("\"{c}\""),
    ] {
        let r = check_challenge(
            bad.as_bytes(),
            Bound::Refresh(&thumb),
            std::slice::from_ref(&k1),
            NOW,
            60,
        );
        assert_eq!(r, Err(ChallengeError::Forged), "{bad}");
    }
}

// ---- tickets ----------------------------------------------------------------------------

#[test]
fn ticket_round_trips_until_it_expires() {
    let k1 = key("k1", 1);
    let thumb = device(&browser()).thumbprint();
    let exp = NOW + 960;
    let t = encode_ticket(&thumb, &[1; 8], exp, &k1);
    assert!(t.starts_with("t1.k1.") && t.len() < 100, "{t}");
    let ring = [key("k0", 0), k1];
    assert_eq!(check_ticket(t.as_bytes(), &ring, NOW), Some(thumb));
    assert_eq!(check_ticket(t.as_bytes(), &ring, exp - 1), Some(thumb));
    assert_eq!(check_ticket(t.as_bytes(), &ring, exp), None, "expired");
    assert_eq!(check_ticket(t.as_bytes(), &ring, u64::MAX), None);
}

#[test]
fn ticket_refused_under_a_wrong_key_or_tampered() {
    let k1 = key("k1", 1);
    let t = encode_ticket(&[5; 16], &[1; 8], NOW + 960, &k1);
    assert_eq!(check_ticket(t.as_bytes(), &[key("k2", 2)], NOW), None);
    assert_eq!(check_ticket(t.as_bytes(), &[key("k1", 2)], NOW), None);
    for i in 0..t.len() {
        let mut bad = t.clone().into_bytes();
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            check_ticket(&bad, std::slice::from_ref(&k1), NOW),
            None,
            "byte {i}"
        );
    }
    for n in 0..t.len() {
        assert_eq!(
            check_ticket(&t.as_bytes()[..n], std::slice::from_ref(&k1), NOW),
            None
        );
    }
    let long = format!("t1.k1.{}.{}", "A".repeat(300), &t[t.len() - 22..]);
    assert_eq!(check_ticket(long.as_bytes(), &[k1], NOW), None);
}

#[path = "jwt_tests.rs"]
mod jwt_tests;

// ---- properties -------------------------------------------------------------------------

proptest! {
    #[test]
    fn nothing_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..600), now in any::<u64>(), ttl in any::<u64>()) {
        let ring = [key("k1", 1)];
        let _ = header_token(&data);
        let _ = parse_proof(&data, true);
        let _ = parse_proof(&data, false);
        let _ = decode_id(&data, &ring);
        let _ = check_ticket(&data, &ring, now);
        let _ = check_challenge(&data, Bound::Refresh(&[0; 16]), &ring, now, ttl);
        let _ = check_challenge(&data, Bound::Registration(&SessionId([0; 16])), &ring, now, ttl);
    }

    #[test]
    fn nothing_panics_on_token_shaped_bytes(parts in proptest::collection::vec("[A-Za-z0-9_-]{0,90}", 0..6), now in any::<u64>()) {
        let data = parts.join(".");
        let ring = [key("k1", 1)];
        prop_assert_eq!(header_token(data.as_bytes()).is_some(), !data.is_empty());
        let _ = parse_proof(data.as_bytes(), true);
        let _ = parse_proof(data.as_bytes(), false);
        prop_assert!(decode_id(data.as_bytes(), &ring).is_none());
        prop_assert!(check_ticket(data.as_bytes(), &ring, now).is_none());
        prop_assert!(check_challenge(data.as_bytes(), Bound::Refresh(&[0; 16]), &ring, now, 1).is_err());
    }

    #[test]
    fn tickets_and_challenges_round_trip(thumb in any::<[u8; 16]>(), t in any::<u64>(), now in any::<u64>()) {
        let ring = [key("k1", 1)];
        let ticket = encode_ticket(&thumb, &[1; 8], t, &ring[0]);
        prop_assert_eq!(check_ticket(ticket.as_bytes(), &ring, now), (t > now).then_some(thumb));
        let c = challenge(Bound::Refresh(&thumb), &ring[0], t);
        let r = check_challenge(c.as_bytes(), Bound::Refresh(&thumb), &ring, now, 600);
        let fresh = t <= now.saturating_add(300) && now.saturating_sub(t) <= 600;
        prop_assert_eq!(r.is_ok(), fresh);
        prop_assert!(r.is_ok() || r == Err(ChallengeError::Stale));
    }
}
