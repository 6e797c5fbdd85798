//! The DBSC policy as a table of requests: both endpoints (every outcome the browser can get),
//! the steady path of a bound session, the offer, and the MAC-before-ECDSA order. Real
//! ES256 proofs, signed here with RustCrypto's `SigningKey` as a browser would.

use super::*;
use crate::config::{parse, Config};
use crate::dbsc::{self, Bound, DeviceKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use p256::ecdsa::{signature::Signer, Signature, SigningKey};

pub(super) const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
pub(super) const NOW: u64 = 1_800_000_000;
const START: &[u8] = b"/.session-guard/dbsc/start";
const REFRESH: &[u8] = b"/.session-guard/dbsc/refresh";

pub(super) fn cfg(extra: &str) -> Config {
    let json =
        format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}],"dbsc":{{"enabled":true{extra}}}}}"#);
    parse(json.as_bytes(), &|_| None).unwrap()
}

pub(super) fn device(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).unwrap()
}

pub(super) fn public(k: &SigningKey) -> DeviceKey {
    let p = k.verifying_key().to_encoded_point(false);
    DeviceKey::from_xy(p.x().unwrap(), p.y().unwrap()).unwrap()
}

/// A `dbsc+jwt` over `jti`, with the `jwk` header member when `jwk` (registration).
pub(super) fn jwt(k: &SigningKey, jti: &str, jwk: bool) -> String {
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
pub(super) fn session(c: &Config, device: Option<&SigningKey>) -> (Session, String) {
    let mut s = Session::new(SessionId([7; 16]), NOW - 10, Some("alice".into()));
    s.scope = request_scope(c, None);
    s.client = s.id.client_fingerprint(&token::ua_digest(b""));
    s.device = device.map(|d| public(d).thumbprint());
    let v = token::encode(&s, "__Host-session", &c.keys[0]).unwrap();
    (s, format!("__Host-session={v}"))
}

pub(super) fn ticket(c: &Config, d: &SigningKey, exp: u64) -> String {
    let t = dbsc::encode_ticket(
        &public(d).thumbprint(),
        &token::session_hash(&SessionId([7; 16])),
        exp,
        &c.keys[0],
    );
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

pub(super) fn counted(d: &RequestDecision, name: &str) -> bool {
    d.record.counters.iter().any(|(c, _)| c.name() == name)
}

pub(super) fn decide(c: &Config, v: &RequestView<'_>) -> RequestDecision {
    let mut n = 0u8;
    decide_request(c, v, &mut || {
        n += 1;
        Some([n; 16])
    })
}

/// The challenge inside `Secure-Session-Challenge: "<c>";id="..."` or a registration header.
pub(super) fn quoted_challenge(v: &str) -> String {
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

/// One endpoint request and what it must give: the status, the counter it moves, and whether
/// the ECDSA check ran (`dbsc.verified`).
struct Case {
    cookie: String,
    id: Option<String>,
    proof: Option<String>,
    status: u32,
    counter: &'static str,
    ecdsa: bool,
}

fn case(cookie: &str, proof: Option<String>, status: u32, counter: &'static str) -> Case {
    let ecdsa = matches!(counter, "refreshed" | "rebound" | "invalid.signature");
    let (cookie, id) = (cookie.to_string(), None);
    Case {
        cookie,
        id,
        proof,
        status,
        counter,
        ecdsa,
    }
}

impl Case {
    fn id(mut self, id: &str) -> Case {
        self.id = (!id.is_empty()).then(|| id.to_string());
        self
    }

    /// Sends the case to `path` and checks what every case promises.
    fn run(&self, c: &Config, path: &'static [u8]) -> RequestDecision {
        let mut v = post(path, vec![self.cookie.as_bytes()]);
        v.dbsc_session_id = self.id.as_deref().map(str::as_bytes);
        v.dbsc_response = self.proof.as_deref().map(str::as_bytes);
        let dec = decide(c, &v);
        let counter = self.counter;
        assert_eq!(answer(&dec).status, self.status, "{counter}");
        let name = format!("session_guard.dbsc.{counter}");
        assert!(counted(&dec, &name), "{counter}");
        let ecdsa = counted(&dec, "session_guard.dbsc.verified");
        assert_eq!(ecdsa, self.ecdsa, "{counter}");
        dec
    }
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
    let reg = |ch: &str| Some(jwt(&d, ch, true));
    let cases = [
        case("", reg(&good), 400, "invalid.session"),
        case(&bound_mesh, reg(&good), 400, "invalid.bound"),
        case(&mesh, None, 403, "challenged"),
        case(&mesh, reg(&other), 403, "invalid.challenge"),
        case(&mesh, reg(&stale), 403, "invalid.challenge"),
        case(&mesh, Some(jwt(&d, &good, false)), 400, "invalid.jwt"),
        case(&mesh, Some("garbage".into()), 400, "invalid.jwt"),
        case(&mesh, Some(signed_by_other), 400, "invalid.signature"),
    ];
    for k in cases {
        let dec = k.run(&c, START);
        assert!(!counted(&dec, "session_guard.dbsc.registered"));
        assert!(header(answer(&dec), "set-cookie").is_empty());
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
    let proof = || Some(jwt(&d, &good, false));
    let cases = [
        case(&mesh, proof(), 200, "refreshed").id(&id),
        case(
            &mesh,
            Some(format!("\"{}\"", jwt(&d, &good, false))),
            200,
            "refreshed",
        )
        .id(&id),
        case(&mesh, None, 403, "challenged").id(&id),
        case(
            &mesh,
            Some(jwt(&d, &stale, false)),
            403,
            "invalid.challenge",
        )
        .id(&id),
        case(&mesh, Some(jwt(&d, &good, true)), 403, "invalid.jwt").id(&id),
        case(
            &mesh,
            Some(jwt(&device(9), &good, false)),
            403,
            "invalid.signature",
        )
        .id(&id),
        case(&mesh, proof(), 200, "invalid.id").id(&forged_id),
        case(&mesh, proof(), 200, "invalid.id"),
        case("", proof(), 200, "invalid.session").id(&id),
        case(&other_mesh, proof(), 200, "invalid.binding").id(&id),
        case(&unbound_mesh, proof(), 200, "rebound").id(&id),
    ];
    for k in cases {
        let dec = k.run(&c, REFRESH);
        check_refresh_answer(&c, &k, &dec, &thumb);
    }
}

/// What a refresh answer carries beyond its status and counter: a ticket exactly when
/// refreshed, the identifier echoed in `{"continue": false}`, a fresh challenge on a 403.
fn check_refresh_answer(c: &Config, k: &Case, dec: &RequestDecision, thumb: &dbsc::Thumbprint) {
    let (r, counter) = (answer(dec), k.counter);
    let ticket_set = header(r, "set-cookie")
        .iter()
        .any(|c| c.starts_with("__Host-session-bound="));
    let issued = matches!(counter, "refreshed" | "rebound");
    assert_eq!(ticket_set, issued, "{counter}");
    let json: Option<serde_json::Value> = serde_json::from_slice(&r.body).ok();
    let ends = json.as_ref().is_some_and(|j| j["continue"] == false);
    if let (true, Some(sid)) = (ends, &k.id) {
        // The identifier presented is echoed: Chrome records a server-requested end.
        assert_eq!(
            json.unwrap()["session_identifier"],
            sid.as_str(),
            "{counter}"
        );
    }
    assert_eq!(ends, counted(dec, "session_guard.dbsc.ended"), "{counter}");
    if k.status == 403 {
        let ch = quoted_challenge(header(r, "secure-session-challenge")[0]);
        let fresh = dbsc::check_challenge(ch.as_bytes(), Bound::Refresh(thumb), &c.keys, NOW, 960);
        assert_eq!(fresh, Ok(()), "{counter}");
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
