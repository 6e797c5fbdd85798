//! The proof: parsing rejects, the ES256 verify, a foreign vector (RFC 7515 A.3).

use super::*;

const JTI: &str = "1800000000.AAAAAAAAAAAAAAAAAAAAAA";

fn header_with(members: &str) -> String {
    format!("{{{members}}}")
}

/// A registration JWT whose header is `{"alg":..,"typ":..,"jwk":<jwk>}` with the given parts.
fn reg_with(alg: &str, typ: &str, jwk: &str) -> String {
    let header = header_with(&format!(r#""alg":"{alg}","typ":"{typ}","jwk":{jwk}"#));
    jws(&header, &format!(r#"{{"jti":"{JTI}"}}"#), &browser())
}

#[test]
fn registration_proof_parses_and_verifies() {
    let jwt = registration_jwt(&browser(), JTI);
    let proof = parse_proof(jwt.as_bytes(), true).unwrap();
    assert_eq!(proof.jti, JTI.as_bytes());
    let jwk = proof.jwk.clone().unwrap();
    assert_eq!(jwk, device(&browser()));
    assert_eq!(verify_proof(&jwk, &proof), Ok(()));
    assert_eq!(
        verify_proof(&device(&thief()), &proof),
        Err(ProofError::Signature)
    );
}

#[test]
fn refresh_proof_verifies_under_the_key_from_the_id() {
    let k1 = key("k1", 1);
    let id = encode_id(&device(&browser()), &k1);
    let dev = decode_id(id.as_bytes(), &[k1]).unwrap();
    let jwt = refresh_jwt(&browser(), JTI);
    let proof = parse_proof(jwt.as_bytes(), false).unwrap();
    assert!(proof.jwk.is_none());
    assert_eq!(verify_proof(&dev, &proof), Ok(()));
    let stolen = refresh_jwt(&thief(), JTI);
    let proof = parse_proof(stolen.as_bytes(), false).unwrap();
    assert_eq!(verify_proof(&dev, &proof), Err(ProofError::Signature));
}

#[test]
fn the_quoted_header_form_gives_the_same_proof() {
    let jwt = registration_jwt(&browser(), JTI);
    let quoted = format!("\"{jwt}\"");
    let token = header_token(quoted.as_bytes()).unwrap();
    assert_eq!(token, jwt.as_bytes());
    assert!(parse_proof(token, true).is_ok());
    assert!(
        parse_proof(quoted.as_bytes(), true).is_err(),
        "quotes are header_token's job"
    );
}

/// Every case is refused with `ProofError::Header` when parsed as `registration` or not.
fn assert_header_rejects(cases: &[String], registration: bool) {
    for (i, jwt) in cases.iter().enumerate() {
        assert_eq!(
            parse_proof(jwt.as_bytes(), registration).err(),
            Some(ProofError::Header),
            "case {i}"
        );
    }
}

#[test]
fn alg_typ_and_crit_rejects() {
    let jwk = jwk_json(&browser());
    let cases = [
        reg_with("none", "dbsc+jwt", &jwk),
        reg_with("RS256", "dbsc+jwt", &jwk),
        reg_with("HS256", "dbsc+jwt", &jwk),
        reg_with("ES384", "dbsc+jwt", &jwk),
        reg_with("es256", "dbsc+jwt", &jwk),
        reg_with("ES256", "jwt", &jwk),
        reg_with("ES256", "JWT", &jwk),
        jws(
            r#"{"alg":"ES256","typ":"dbsc+jwt"}"#,
            r#"{"jti":"x"}"#,
            &browser(),
        ),
        jws(
            &format!(r#"{{"typ":"dbsc+jwt","jwk":{jwk}}}"#),
            r#"{"jti":"x"}"#,
            &browser(),
        ),
        jws(
            &format!(r#"{{"alg":"ES256","jwk":{jwk}}}"#),
            r#"{"jti":"x"}"#,
            &browser(),
        ),
        jws(
            &format!(
                r#"{{"alg":"ES256","typ":"dbsc+jwt","jwk":{jwk},"crit":["b64"],"b64":false}}"#
            ),
            r#"{"jti":"x"}"#,
            &browser(),
        ),
    ];
    assert_header_rejects(&cases, true);
}

#[test]
fn jwk_rejects_at_registration() {
    let jwk = jwk_json(&browser());
    let (x, y) = xy(&browser());
    let mut off_curve = y;
    off_curve[0] ^= 0x80;
    let with_xy = |x: &[u8], y: &[u8]| {
        format!(
            r#"{{"kty":"EC","crv":"P-256","x":"{}","y":"{}"}}"#,
            b64(x),
            b64(y)
        )
    };
    let cases = [
        reg_with("ES256", "dbsc+jwt", "null"),
        reg_with("ES256", "dbsc+jwt", r#""a string""#),
        reg_with(
            "ES256",
            "dbsc+jwt",
            &jwk.replace(r#""kty":"EC""#, r#""kty":"RSA""#),
        ),
        reg_with("ES256", "dbsc+jwt", &jwk.replace(r#""kty":"EC","#, "")),
        reg_with("ES256", "dbsc+jwt", &jwk.replace("P-256", "P-384")),
        reg_with("ES256", "dbsc+jwt", &jwk.replace("P-256", "secp256k1")),
        reg_with("ES256", "dbsc+jwt", &with_xy(&x[1..], &y)),
        reg_with(
            "ES256",
            "dbsc+jwt",
            &with_xy(&x, &[y.as_slice(), &[0]].concat()),
        ),
        reg_with("ES256", "dbsc+jwt", &with_xy(&x, &off_curve)),
        reg_with("ES256", "dbsc+jwt", &with_xy(&[0xff; 32], &[0xff; 32])),
        reg_with(
            "ES256",
            "dbsc+jwt",
            &format!(r#"{{"kty":"EC","crv":"P-256","x":"{}"}}"#, b64(x)),
        ),
        reg_with(
            "ES256",
            "dbsc+jwt",
            &jwk.replace(&b64(x), &format!("{}=", b64(x))),
        ),
    ];
    assert_header_rejects(&cases, true);
}

#[test]
fn jwk_present_at_refresh_rejects() {
    // At refresh, the jwk must be absent: present (even valid) is a header reject.
    let with_jwk = registration_jwt(&browser(), JTI);
    assert_eq!(
        parse_proof(with_jwk.as_bytes(), false).err(),
        Some(ProofError::Header)
    );
    let null_jwk = jws(
        r#"{"alg":"ES256","typ":"dbsc+jwt","jwk":null}"#,
        r#"{"jti":"x"}"#,
        &browser(),
    );
    assert_eq!(
        parse_proof(null_jwk.as_bytes(), false).err(),
        Some(ProofError::Header)
    );
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"dbsc+jwt"}"#),
        b64(r#"{"jti":"x"}"#)
    );
    assert_eq!(
        parse_proof(none.as_bytes(), false).err(),
        Some(ProofError::Header)
    );
}

#[test]
fn typ_is_a_media_type_compared_without_case() {
    let jwt = reg_with("ES256", "DBSC+JWT", &jwk_json(&browser()));
    assert!(parse_proof(jwt.as_bytes(), true).is_ok());
}

#[test]
fn malformed_token_rejects() {
    let good = registration_jwt(&browser(), JTI);
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let registration = [
        String::new(),
        "..".into(),
        format!("{h}.{p}"),
        format!("{h}.{p}.{s}.{s}"),
        format!("{h}=.{p}.{s}"),
        format!("{h}.{p}.{s}A"),
        format!("{h}.{p}.{}", &s[..85]),
        format!("{h}.{p}.{}", b64([1u8; 65])),
        format!("{h}.{p}.{}", b64([1u8; 63])),
        format!("{h}+.{p}.{s}"),
        format!("{h}.{p}.{s}{}", "A".repeat(8 * 1024)),
        format!("{}.{p}.{s}", b64("[1,2]")),
        format!("{}.{p}.{s}", b64("not json")),
        format!("{}.{p}.{s}", b64([0xffu8, 0xfe])),
        format!(
            "{}.{p}.{s}",
            b64(format!(r#"{{"alg":"ES256","x":"{}"}}"#, "A".repeat(800)))
        ),
    ];
    for (i, jwt) in registration.iter().enumerate() {
        assert_eq!(
            parse_proof(jwt.as_bytes(), true).err(),
            Some(ProofError::Malformed),
            "case {i}"
        );
    }
}

#[test]
fn malformed_payload_rejects() {
    let header = r#"{"alg":"ES256","typ":"dbsc+jwt"}"#;
    let sign = |payload: &str| jws(header, payload, &browser());
    let refresh = [
        sign(r#"{"nojti":"x"}"#),
        sign(r#"{"jti":42}"#),
        sign(r#"{"jti":null}"#),
        sign("[]"),
        sign("\"x\""),
        sign(&format!(r#"{{"jti":"{}"}}"#, "a".repeat(257))),
        sign(&format!(
            r#"{{"jti":"x","authorization":"{}"}}"#,
            "a".repeat(5000)
        )),
    ];
    for (i, jwt) in refresh.iter().enumerate() {
        assert_eq!(
            parse_proof(jwt.as_bytes(), false).err(),
            Some(ProofError::Malformed),
            "case {i}"
        );
    }
    let longest_jti = sign(&format!(
        r#"{{"jti":"{}","authorization":"x","other":[1]}}"#,
        "a".repeat(256)
    ));
    assert_eq!(
        parse_proof(longest_jti.as_bytes(), false)
            .unwrap()
            .jti
            .len(),
        256
    );
}

#[test]
fn a_changed_signed_byte_or_a_bad_scalar_fails_the_signature() {
    let jwt = registration_jwt(&browser(), JTI);
    let dev = device(&browser());
    let (input, s) = jwt.rsplit_once('.').unwrap();
    let other = registration_jwt(&browser(), "1800000000.BBBBBBBBBBBBBBBBBBBBBB");
    let (other_input, _) = other.rsplit_once('.').unwrap();
    let spliced = format!("{other_input}.{s}");
    let proof = parse_proof(spliced.as_bytes(), true).unwrap();
    assert_eq!(verify_proof(&dev, &proof), Err(ProofError::Signature));
    for sig in [[0u8; 64], [0xff; 64]] {
        let jwt = format!("{input}.{}", b64(sig));
        let proof = parse_proof(jwt.as_bytes(), true).unwrap();
        assert_eq!(verify_proof(&dev, &proof), Err(ProofError::Signature));
    }
}

#[test]
fn a_high_s_signature_is_accepted() {
    let jwt = refresh_jwt(&browser(), JTI);
    let (input, _) = jwt.rsplit_once('.').unwrap();
    let sig: Signature = browser().sign(input.as_bytes());
    let (r, s) = sig.split_scalars();
    let flipped = Signature::from_scalars(r, -s).unwrap();
    assert_ne!(flipped, sig);
    let jwt = format!("{input}.{}", b64(flipped.to_bytes()));
    let proof = parse_proof(jwt.as_bytes(), false).unwrap();
    assert_eq!(verify_proof(&device(&browser()), &proof), Ok(()));
}

/// RFC 7515 Appendix A.3: a JWS made by someone else's ES256 implementation.
const A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
const A3_D: &str = "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI";
const A3_INPUT: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
const A3_SIG: &str =
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

fn a3_proof(input: &str, sig: &str) -> Proof<'static> {
    let input: &'static str = Box::leak(input.to_string().into_boxed_str());
    Proof {
        jwk: None,
        jti: Vec::new(),
        signing_input: input.as_bytes(),
        signature: URL_SAFE_NO_PAD.decode(sig).unwrap().try_into().unwrap(),
    }
}

#[test]
fn rfc7515_a3_verifies() {
    let x = URL_SAFE_NO_PAD.decode(A3_X).unwrap();
    let y = URL_SAFE_NO_PAD.decode(A3_Y).unwrap();
    let key = DeviceKey::from_xy(&x, &y).unwrap();
    // The vector's private key gives its public key: the coordinates are read right.
    let d: [u8; 32] = URL_SAFE_NO_PAD.decode(A3_D).unwrap().try_into().unwrap();
    assert_eq!(
        xy(&SigningKey::from_bytes(&FieldBytes::from(d)).unwrap()),
        (x.try_into().unwrap(), y.try_into().unwrap())
    );
    assert_eq!(verify_proof(&key, &a3_proof(A3_INPUT, A3_SIG)), Ok(()));
    let tampered_sig = A3_SIG.replace("NU1Q", "NU1A");
    assert_eq!(
        verify_proof(&key, &a3_proof(A3_INPUT, &tampered_sig)),
        Err(ProofError::Signature)
    );
    let tampered_input = A3_INPUT.replace("eyJhbGciOiJFUzI1NiJ9", "eyJhbGciOiJFUzI1NiIg");
    assert_eq!(
        verify_proof(&key, &a3_proof(&tampered_input, A3_SIG)),
        Err(ProofError::Signature)
    );
    assert_eq!(
        verify_proof(&device(&browser()), &a3_proof(A3_INPUT, A3_SIG)),
        Err(ProofError::Signature)
    );
    // Its header has no typ and no jwk: as a DBSC proof it is refused before any verify.
    let jws = format!("{A3_INPUT}.{A3_SIG}");
    assert_eq!(
        parse_proof(jws.as_bytes(), false).err(),
        Some(ProofError::Header)
    );
}

#[test]
fn debug_prints_no_challenge_id_or_tag() {
    let k1 = key("k1", 1);
    let sid = SessionId([3; 16]);
    let thumb = device(&browser()).thumbprint();
    let c = challenge(Bound::Refresh(&thumb), &k1, NOW);
    let jwt = registration_jwt(&browser(), &c);
    let proof = parse_proof(jwt.as_bytes(), true).unwrap();
    let printed = format!(
        "{proof:?} {:?} {:?} {:?}",
        Bound::Refresh(&thumb),
        Bound::Registration(&sid),
        device(&browser())
    );
    let (_, tag) = c.split_once('.').unwrap();
    assert!(!printed.contains(tag), "{printed}");
    assert_eq!(
        printed,
        "Proof { jwk: Some(DeviceKey), .. } Refresh(<redacted>) Registration(<redacted>) DeviceKey"
    );
}
