//! The DBSC policy as a table of requests: both endpoints (every outcome the browser can get),
//! the steady path of a bound session, the offer, and the MAC-before-ECDSA order. Real
//! ES256 proofs, signed here with RustCrypto's `SigningKey` as a browser would.

use super::*;
use crate::config::{parse, Config};
use crate::dbsc::{self, Bound, DeviceKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use p256::ecdsa::{signature::Signer, Signature, SigningKey};

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const NOW: u64 = 1_800_000_000;
const START: &[u8] = b"/.session-guard/dbsc/start";
const REFRESH: &[u8] = b"/.session-guard/dbsc/refresh";

fn cfg(extra: &str) -> Config {
    let json =
        format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}],"dbsc":{{"enabled":true{extra}}}}}"#);
    parse(json.as_bytes(), &|_| None).unwrap()
}

fn device(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).unwrap()
}

fn public(k: &SigningKey) -> DeviceKey {
    let p = k.verifying_key().to_encoded_point(false);
    DeviceKey::from_xy(p.x().unwrap(), p.y().unwrap()).unwrap()
}

/// A `dbsc+jwt` over `jti`, with the `jwk` header member when `jwk` (registration).
fn jwt(k: &SigningKey, jti: &str, jwk: bool) -> String {
    let p = k.verifying_key().to_encoded_point(false);
    let jwk = if jwk {
        format!(
            r#","jwk":{{"kty":"EC","crv":"P-256","x":"{}","y":"{}"}}"#,
            B64.encode(p.x().unwrap()),
            B64.encode(p.y().unwrap())
        )
    } else {
        String::new()
    };
    let header = format!(r#"{{"alg":"ES256","typ":"dbsc+jwt"{jwk}}}"#);
    let input = format!(
        "{}.{}",
        B64.encode(header),
        B64.encode(format!(r#"{{"jti":"{jti}"}}"#))
    );
    let sig: Signature = k.sign(input.as_bytes());
    format!("{input}.{}", B64.encode(sig.to_bytes()))
}

/// An authenticated session (bound to `device` if given), as a Cookie header value.
fn session(c: &Config, device: Option<&SigningKey>) -> (Session, String) {
    let mut s = Session::new(SessionId([7; 16]), NOW - 10, Some("alice".into()));
    s.scope = request_scope(c, None);
    s.client = s.id.client_fingerprint(&token::ua_digest(b""));
    s.device = device.map(|d| public(d).thumbprint());
    let v = token::encode(&s, "__Host-session", &c.keys[0]).unwrap();
    (s, format!("__Host-session={v}"))
}

fn ticket(c: &Config, d: &SigningKey, exp: u64) -> String {
    let t = dbsc::encode_ticket(&public(d).thumbprint(), exp, &c.keys[0]);
    format!("{}={t}", dbsc::TICKET_COOKIE)
}

fn post<'a>(path: &'a [u8], cookies: Vec<&'a [u8]>) -> RequestView<'a> {
    RequestView {
        method: b"POST",
        path: Some(path),
        cookies,
        now: NOW,
        ..Default::default()
    }
}

fn answer(d: &RequestDecision) -> &LocalReply {
    match &d.outcome {
        RequestOutcome::Answer(r) => r,
        other => panic!("expected the endpoint's answer, got {other:?}"),
    }
}

fn header<'a>(r: &'a LocalReply, name: &str) -> Vec<&'a str> {
    r.headers
        .iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn counted(d: &RequestDecision, name: &str) -> bool {
    d.record.counters.iter().any(|(c, _)| c.name() == name)
}

fn decide(c: &Config, v: &RequestView<'_>) -> RequestDecision {
    let mut n = 0u8;
    decide_request(c, v, &mut || {
        n += 1;
        Some([n; 16])
    })
}

/// The challenge inside `Secure-Session-Challenge: "<c>";id="..."` or a registration header.
fn quoted_challenge(v: &str) -> String {
    let from = v.find("challenge=\"").map_or(1, |i| i + 11);
    let rest = &v[from..];
    rest[..rest.find('"').unwrap()].to_string()
}

#[test]
fn registration_binds_an_authenticated_session_to_the_device_key() {
    let c = cfg("");
    let (s, mesh) = session(&c, None);
    let d = device(1);
    let challenge = dbsc::challenge(Bound::Registration(&s.id), &c.keys[0], NOW - 5);
    let proof = jwt(&d, &challenge, true);
    let mut v = post(START, vec![mesh.as_bytes()]);
    v.dbsc_response = Some(proof.as_bytes());
    let dec = decide(&c, &v);
    let r = answer(&dec);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(counted(&dec, "session_guard.dbsc.registered"));
    assert!(counted(&dec, "session_guard.dbsc.verified"));
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let id = body["session_identifier"].as_str().unwrap();
    assert_eq!(dbsc::decode_id(id.as_bytes(), &c.keys), Some(public(&d)));
    assert_eq!(body["refresh_url"], "/.session-guard/dbsc/refresh");
    assert_eq!(body["credentials"][0]["name"], dbsc::TICKET_COOKIE);
    let cookies = header(r, "set-cookie");
    let bound = cookies
        .iter()
        .find(|c| c.starts_with("__Host-session="))
        .unwrap();
    let value = &bound["__Host-session=".len()..bound.find(';').unwrap()];
    let again = token::decode(value.as_bytes(), b"__Host-session", &c.keys).unwrap();
    assert_eq!(
        (again.id, again.device),
        (s.id, Some(public(&d).thumbprint()))
    );
    let t = cookies
        .iter()
        .find(|c| c.starts_with("__Host-session-bound="))
        .unwrap();
    assert!(t.contains("Max-Age=900") && t.contains("Secure") && t.contains("HttpOnly"));
    let tv = &t["__Host-session-bound=".len()..t.find(';').unwrap()];
    assert_eq!(
        dbsc::check_ticket(tv.as_bytes(), &c.keys, NOW + 900),
        Some(public(&d).thumbprint())
    );
    let next = header(r, "secure-session-challenge");
    assert!(next[0].ends_with(&format!(";id=\"{id}\"")), "{next:?}");
}

#[test]
fn registration_refusals_and_the_order_of_checks() {
    let c = cfg("");
    let (s, mesh) = session(&c, None);
    let (_, bound_mesh) = session(&c, Some(&device(2)));
    let d = device(1);
    let good = dbsc::challenge(Bound::Registration(&s.id), &c.keys[0], NOW);
    let other = dbsc::challenge(Bound::Registration(&SessionId([8; 16])), &c.keys[0], NOW);
    let stale = dbsc::challenge(Bound::Registration(&s.id), &c.keys[0], NOW - 301);
    let mut signed_by_other = jwt(&d, &good, true);
    let tail = jwt(&device(3), &good, true);
    signed_by_other.truncate(signed_by_other.rfind('.').unwrap());
    signed_by_other.push_str(&tail[tail.rfind('.').unwrap()..]);
    // (cookie, proof, status, counter, ECDSA run)
    let cases: Vec<(&str, Option<String>, u32, &str, bool)> = vec![
        (
            "",
            Some(jwt(&d, &good, true)),
            400,
            "invalid.session",
            false,
        ),
        (
            &bound_mesh,
            Some(jwt(&d, &good, true)),
            400,
            "invalid.bound",
            false,
        ),
        (&mesh, None, 403, "challenged", false),
        (
            &mesh,
            Some(jwt(&d, &other, true)),
            403,
            "invalid.challenge",
            false,
        ),
        (
            &mesh,
            Some(jwt(&d, &stale, true)),
            403,
            "invalid.challenge",
            false,
        ),
        (
            &mesh,
            Some(jwt(&d, &good, false)),
            400,
            "invalid.jwt",
            false,
        ),
        (&mesh, Some("garbage".into()), 400, "invalid.jwt", false),
        (&mesh, Some(signed_by_other), 400, "invalid.signature", true),
    ];
    for (cookie, proof, status, counter, ecdsa) in cases {
        let mut v = post(START, vec![cookie.as_bytes()]);
        v.dbsc_response = proof.as_deref().map(str::as_bytes);
        let dec = decide(&c, &v);
        let r = answer(&dec);
        assert_eq!(r.status, status, "{counter}");
        assert!(
            counted(&dec, &format!("session_guard.dbsc.{counter}")),
            "{counter}"
        );
        assert_eq!(
            counted(&dec, "session_guard.dbsc.verified"),
            ecdsa,
            "{counter}"
        );
        assert!(!counted(&dec, "session_guard.dbsc.registered"));
        assert!(header(r, "set-cookie").is_empty());
    }
}

#[test]
fn refresh_outcomes() {
    let c = cfg("");
    let d = device(1);
    let (_, mesh) = session(&c, Some(&d));
    let (_, other_mesh) = session(&c, Some(&device(2)));
    let (_, unbound_mesh) = session(&c, None);
    let id = dbsc::encode_id(&public(&d), &c.keys[0]);
    let mut forged_id = id.clone();
    forged_id.replace_range(10..11, if &id[10..11] == "A" { "B" } else { "A" });
    let thumb = public(&d).thumbprint();
    let good = dbsc::challenge(Bound::Refresh(&thumb), &c.keys[0], NOW - 100);
    let stale = dbsc::challenge(Bound::Refresh(&thumb), &c.keys[0], NOW - 961);
    let quoted = format!("\"{}\"", jwt(&d, &good, false));
    // (mesh cookie, id, proof, status, counter, ECDSA run)
    let cases: Vec<(&str, &str, Option<String>, u32, &str, bool)> = vec![
        (
            &mesh,
            &id,
            Some(jwt(&d, &good, false)),
            200,
            "refreshed",
            true,
        ),
        (&mesh, &id, Some(quoted), 200, "refreshed", true),
        (&mesh, &id, None, 403, "challenged", false),
        (
            &mesh,
            &id,
            Some(jwt(&d, &stale, false)),
            403,
            "invalid.challenge",
            false,
        ),
        (
            &mesh,
            &id,
            Some(jwt(&d, &good, true)),
            403,
            "invalid.jwt",
            false,
        ),
        (
            &mesh,
            &id,
            Some(jwt(&device(9), &good, false)),
            403,
            "invalid.signature",
            true,
        ),
        (
            &mesh,
            &forged_id,
            Some(jwt(&d, &good, false)),
            200,
            "invalid.id",
            false,
        ),
        (
            &mesh,
            "",
            Some(jwt(&d, &good, false)),
            200,
            "invalid.id",
            false,
        ),
        (
            "",
            &id,
            Some(jwt(&d, &good, false)),
            200,
            "invalid.session",
            false,
        ),
        (
            &other_mesh,
            &id,
            Some(jwt(&d, &good, false)),
            200,
            "invalid.binding",
            false,
        ),
        (
            &unbound_mesh,
            &id,
            Some(jwt(&d, &good, false)),
            200,
            "invalid.binding",
            false,
        ),
    ];
    for (cookie, sid, proof, status, counter, ecdsa) in cases {
        let mut v = post(REFRESH, vec![cookie.as_bytes()]);
        v.dbsc_session_id = (!sid.is_empty()).then_some(sid.as_bytes());
        v.dbsc_response = proof.as_deref().map(str::as_bytes);
        let dec = decide(&c, &v);
        let r = answer(&dec);
        assert_eq!(r.status, status, "{counter}");
        assert!(
            counted(&dec, &format!("session_guard.dbsc.{counter}")),
            "{counter}"
        );
        assert_eq!(
            counted(&dec, "session_guard.dbsc.verified"),
            ecdsa,
            "{counter}"
        );
        let ticket_set = header(r, "set-cookie")
            .iter()
            .any(|c| c.starts_with("__Host-session-bound="));
        assert_eq!(ticket_set, counter == "refreshed", "{counter}");
        let ends = &*r.body == b"{\"continue\":false}";
        assert_eq!(ends, counted(&dec, "session_guard.dbsc.ended"), "{counter}");
        if status == 403 {
            let ch = quoted_challenge(header(r, "secure-session-challenge")[0]);
            let fresh =
                dbsc::check_challenge(ch.as_bytes(), Bound::Refresh(&thumb), &c.keys, NOW, 960);
            assert_eq!(fresh, Ok(()), "{counter}");
        }
    }
}

#[test]
fn endpoints_answer_only_post_in_every_mode_and_only_when_enabled() {
    let c = cfg("");
    let mut v = post(REFRESH, vec![]);
    v.method = b"GET";
    assert_eq!(answer(&decide(&c, &v)).status, 405);
    let v = post(b"/.session-guard/dbsc/start?x=1", vec![]);
    assert_eq!(answer(&decide(&c, &v)).status, 400);
    let monitor = cfg(r#","mode":"monitor""#);
    assert_eq!(
        answer(&decide(&monitor, &post(REFRESH, vec![]))).status,
        200
    );
    let off = parse(
        format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]}}"#).as_bytes(),
        &|_| None,
    )
    .unwrap();
    assert!(matches!(
        decide(&off, &post(REFRESH, vec![])).outcome,
        RequestOutcome::Forward(_)
    ));
}

#[test]
fn an_anonymous_flood_of_the_endpoints_runs_no_signature_check() {
    let c = cfg("");
    let d = device(1);
    let thumb = public(&d).thumbprint();
    let id = dbsc::encode_id(&public(&d), &c.keys[0]);
    let proof = jwt(
        &d,
        &dbsc::challenge(Bound::Refresh(&thumb), &c.keys[0], NOW),
        false,
    );
    let reg = jwt(
        &d,
        &dbsc::challenge(Bound::Registration(&SessionId([7; 16])), &c.keys[0], NOW),
        true,
    );
    for i in 0..50u8 {
        let path = if i % 2 == 0 { START } else { REFRESH };
        let mut v = post(path, vec![]);
        v.dbsc_session_id = Some(id.as_bytes());
        v.dbsc_response = Some(if i % 2 == 0 {
            reg.as_bytes()
        } else {
            proof.as_bytes()
        });
        assert!(!counted(&decide(&c, &v), "session_guard.dbsc.verified"));
    }
}

fn get<'a>(cookies: Vec<&'a [u8]>) -> RequestView<'a> {
    RequestView {
        method: b"GET",
        path: Some(b"/account"),
        cookies,
        now: NOW,
        ..Default::default()
    }
}

#[test]
fn a_bound_session_reaches_the_upstream_only_with_a_fresh_ticket() {
    let c = cfg("");
    let d = device(1);
    let (_, mesh) = session(&c, Some(&d));
    let fresh = ticket(&c, &d, NOW + 10);
    let expired = ticket(&c, &d, NOW);
    let foreign = ticket(&c, &device(2), NOW + 10);
    let with = |t: &str| match t {
        "" => format!("{mesh}; JSESSIONID=abc; theme=dark"),
        t => format!("{mesh}; {t}; JSESSIONID=abc; theme=dark"),
    };
    let ok = decide(&c, &get(vec![with(&fresh).as_bytes()]));
    let e = forward_edits(&ok);
    assert!(e.set.iter().any(|(n, _)| n == "x-session-subject"));
    assert!(
        !String::from_utf8_lossy(&e.cookies.clone().unwrap()[0]).contains("__Host-session-bound")
    );
    assert_eq!(ok.pending.device, Some(public(&d).thumbprint()));
    for (t, invalid) in [
        ("", false),
        (expired.as_str(), true),
        (foreign.as_str(), true),
    ] {
        let hdr = with(t);
        let mut v = get(vec![hdr.as_bytes()]);
        v.spoofed = vec!["x-session-subject"];
        let dec = decide(&c, &v);
        let e = forward_edits(&dec);
        assert!(e.set.is_empty(), "{t}");
        assert_eq!(e.remove, ["x-session-subject"]);
        assert_eq!(e.cookies, Some(vec![b"theme=dark".to_vec()]), "{t}");
        assert!(dec.pending.unproven && dec.pending.device.is_none());
        assert_eq!(dec.pending.decision, "unproven");
        assert!(counted(&dec, "session_guard.dbsc.unproven"));
        assert_eq!(counted(&dec, "session_guard.dbsc.invalid.ticket"), invalid);
        assert_eq!(dec.pending.issue, Issue::None);
    }
    // DBSC off (a rollback): the bound session is an ordinary one.
    let off = parse(
        format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]}}"#).as_bytes(),
        &|_| None,
    )
    .unwrap();
    let dec = decide(&off, &get(vec![with("").as_bytes()]));
    assert!(forward_edits(&dec)
        .set
        .iter()
        .any(|(n, _)| n == "x-session-subject"));
    // Monitor: counted, forwarded with its identity.
    let m = cfg(r#","mode":"monitor""#);
    let dec = decide(&m, &get(vec![with("").as_bytes()]));
    assert!(counted(&dec, "session_guard.dbsc.unproven"));
    assert!(forward_edits(&dec)
        .set
        .iter()
        .any(|(n, _)| n == "x-session-id"));
}

fn forward_edits(d: &RequestDecision) -> &RequestEdits {
    match &d.outcome {
        RequestOutcome::Forward(e) => e,
        other => panic!("expected forward, got {other:?}"),
    }
}

#[test]
fn require_bound_after_s_ends_unbound_authenticated_sessions() {
    let c = cfg(r#","require_bound_after_s":5"#);
    let (_, unbound) = session(&c, None);
    let dec = decide(&c, &get(vec![unbound.as_bytes()]));
    assert!(counted(&dec, "session_guard.session.invalid.unbound"));
    let c = cfg(r#","require_bound_after_s":60"#);
    let dec = decide(&c, &get(vec![unbound.as_bytes()]));
    assert!(counted(&dec, "session_guard.session.valid"));
}

fn login_response(c: &Config, p: &Pending, signal: &'static [u8]) -> ResponseDecision {
    let v = ResponseView {
        signals: vec![signal],
        subjects: vec![b"alice"],
        now: NOW,
        ..Default::default()
    };
    decide_response(c, p, &v)
}

#[test]
fn offers_on_login_keeps_a_proven_binding_and_expires_the_ticket_on_logout() {
    let c = cfg("");
    let d = device(1);
    let (_, mesh) = session(&c, Some(&d));
    let (_, unbound) = session(&c, None);
    let fresh = ticket(&c, &d, NOW + 10);
    let proven_hdr = format!("{mesh}; {fresh}");
    let mut cases = vec![];
    for (hdr, offered, kept) in [
        (unbound.as_str(), true, None),
        (proven_hdr.as_str(), false, Some(public(&d).thumbprint())),
        (mesh.as_str(), true, None),
    ] {
        let mut p = decide(&c, &get(vec![hdr.as_bytes()])).pending;
        p.may_signal = true;
        p.next_id = Some(SessionId([5; 16]));
        cases.push((p, offered, kept));
    }
    for (p, offered, kept) in cases {
        let r = login_response(&c, &p, b"login");
        let offer: Vec<_> = r
            .edits
            .add
            .iter()
            .filter(|(n, _)| *n == "secure-session-registration")
            .collect();
        assert_eq!(
            offer.len(),
            usize::from(offered),
            "{:?} {:?}",
            p.decision,
            r.edits
        );
        if offered {
            let ch = quoted_challenge(&offer[0].1);
            let ok = dbsc::check_challenge(
                ch.as_bytes(),
                Bound::Registration(&SessionId([5; 16])),
                &c.keys,
                NOW,
                300,
            );
            assert_eq!(ok, Ok(()));
            assert!(offer[0]
                .1
                .starts_with("(ES256);path=\"/.session-guard/dbsc/start\""));
        }
        let MeshCookieOf(s) = mesh_of(&c, &r);
        assert_eq!(s.device, kept);
    }
    let p = decide(&c, &get(vec![proven_hdr.as_bytes()])).pending;
    let mut p = p;
    p.may_signal = true;
    let r = login_response(&c, &p, b"logout");
    let SetCookies::Replace(list) = &r.edits.set_cookies else {
        panic!("logout expires two cookies")
    };
    assert!(list
        .iter()
        .any(|v| v.starts_with(b"__Host-session-bound=; ") && v.ends_with(b"Max-Age=0")));
}

struct MeshCookieOf(Session);

fn mesh_of(c: &Config, r: &ResponseDecision) -> MeshCookieOf {
    let list: Vec<Vec<u8>> = match &r.edits.set_cookies {
        SetCookies::Append(v) => vec![v.clone().into_bytes()],
        SetCookies::Replace(l) => l.clone(),
        SetCookies::Unchanged => vec![],
    };
    let v = list
        .iter()
        .find(|v| v.starts_with(b"__Host-session="))
        .unwrap();
    let v = &v[15..v.iter().position(|&b| b == b';').unwrap()];
    MeshCookieOf(token::decode(v, b"__Host-session", &c.keys).unwrap())
}
