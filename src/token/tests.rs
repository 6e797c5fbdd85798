#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]
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

#[test]
fn a_device_binding_round_trips_under_the_mac() {
    let k = key("k1", 1);
    let mut s = Session::new(SessionId([3; 16]), 100, Some("alice".into()));
    s.bind([9; TAG_LEN]);
    s.device = Some([7; TAG_LEN]);
    let v = encode(&s, NAME, &k).unwrap();
    assert_eq!(
        decode(v.as_bytes(), NAME.as_bytes(), std::slice::from_ref(&k)),
        Ok(s.clone())
    );
    // The flag without the thumbprint, or with a short one, is no session.
    let mut payload = Vec::new();
    payload.extend_from_slice(&100u64.to_be_bytes());
    payload.extend_from_slice(&100u64.to_be_bytes());
    payload.extend_from_slice(&[3; 16]);
    payload.extend_from_slice(&[0; TAG_LEN + CLIENT_LEN]);
    payload.push(0x80);
    assert_eq!(parse_payload(&payload, false), Err(Invalid::Malformed));
    payload.extend_from_slice(&[7; TAG_LEN]);
    let bound = parse_payload(&payload, false).unwrap();
    assert_eq!(bound.device, Some([7; TAG_LEN]));
    // An unbound session encodes exactly as before the device field existed.
    s.device = None;
    let plain = encode(&s, NAME, &k).unwrap();
    assert!(plain.len() < v.len());
}
