//! The DBSC policy on the steady path and the response: a bound session reaches the upstream
//! only with a fresh ticket, `require_bound_after_s`, the offer, a login while bound, logout.

use super::dbsc_tests::{
    cfg, counted, decide, device, public, quoted_challenge, session, ticket, KEY, NOW,
};
use super::*;
use crate::config::{parse, Config};
use crate::dbsc::{self, Bound};

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
fn offers_on_login_and_keeps_a_proven_binding() {
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
}

#[test]
fn logout_expires_the_ticket_too() {
    let c = cfg("");
    let d = device(1);
    let (_, mesh) = session(&c, Some(&d));
    let proven_hdr = format!("{mesh}; {}", ticket(&c, &d, NOW + 10));
    let mut p = decide(&c, &get(vec![proven_hdr.as_bytes()])).pending;
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

#[test]
fn offer_authenticated_also_offers_on_navigations_never_on_shared_cacheable_ones() {
    let c = cfg(r#","offer":"authenticated""#);
    let (s, unbound) = session(&c, None);
    let mut nav = get(vec![unbound.as_bytes()]);
    nav.sec_fetch_mode = Some(b"navigate");
    let p = decide(&c, &nav).pending;
    let private = ResponseView {
        cache_control: Some(std::borrow::Cow::Borrowed(b"max-age=3600")),
        now: NOW,
        ..Default::default()
    };
    let r = decide_response(&c, &p, &private);
    let offer = &r.edits.add[0].1;
    let ch = quoted_challenge(offer);
    let ok = dbsc::check_challenge(ch.as_bytes(), Bound::Registration(&s.id), &c.keys, NOW, 300);
    assert_eq!(ok, Ok(()));
    // A session's challenge: no shared cache may store the response.
    let cc = String::from_utf8(r.edits.cache_control.unwrap()).unwrap();
    assert!(cc.contains("private") || cc.contains("no-store"), "{cc}");
    // Not on a 304, nor on a subresource (each would start a registration of its own).
    let not_modified = ResponseView {
        status: Some(b"304"),
        now: NOW,
        ..Default::default()
    };
    assert!(decide_response(&c, &p, &not_modified).edits.add.is_empty());
    let sub = decide(&c, &get(vec![unbound.as_bytes()])).pending;
    assert!(decide_response(&c, &sub, &private).edits.add.is_empty());
    let public = ResponseView {
        cache_control: Some(std::borrow::Cow::Borrowed(b"public, max-age=60")),
        now: NOW,
        ..Default::default()
    };
    assert!(decide_response(&c, &p, &public).edits.add.is_empty());
    // The default offers only on a login.
    let login_only = cfg("");
    let p = decide(&login_only, &get(vec![unbound.as_bytes()])).pending;
    assert!(decide_response(&login_only, &p, &private)
        .edits
        .add
        .is_empty());
}

#[test]
fn removing_the_key_that_signed_the_identifier_ends_the_session_at_its_refresh() {
    let old = cfg("");
    let d = device(1);
    let id = dbsc::encode_id(&public(&d), &old.keys[0]);
    let json = format!(r#"{{"keys":[{{"id":"k2","secret":"{KEY}"}}],"dbsc":{{"enabled":true}}}}"#);
    let rotated = parse(json.as_bytes(), &|_| None).unwrap();
    assert_eq!(dbsc::decode_id(id.as_bytes(), &rotated.keys), None);
    let mut v = get(vec![]);
    v.method = b"POST";
    v.path = Some(b"/.session-guard/dbsc/refresh");
    v.dbsc_session_id = Some(id.as_bytes());
    let dec = decide(&rotated, &v);
    assert!(counted(&dec, "session_guard.dbsc.invalid.id"));
    assert!(counted(&dec, "session_guard.dbsc.ended"));
}

#[test]
fn an_unbound_session_with_a_valid_ticket_is_bound_again_and_reissued() {
    let c = cfg("");
    let d = device(1);
    let (_, unbound) = session(&c, None);
    let fresh = ticket(&c, &d, NOW + 10);
    let expired = ticket(&c, &d, NOW);
    let hdr = format!("{unbound}; {fresh}");
    let dec = decide(&c, &get(vec![hdr.as_bytes()]));
    assert!(counted(&dec, "session_guard.dbsc.rebound"));
    assert_eq!(dec.pending.issue, Issue::Reissued);
    assert_eq!(dec.pending.device, Some(public(&d).thumbprint()));
    assert_eq!(
        dec.pending.session.as_ref().unwrap().device,
        Some(public(&d).thumbprint())
    );
    let hdr = format!("{unbound}; {expired}");
    let dec = decide(&c, &get(vec![hdr.as_bytes()]));
    assert!(!counted(&dec, "session_guard.dbsc.rebound"));
    assert_eq!(dec.pending.session.as_ref().unwrap().device, None);
    // An anonymous session is never bound.
    let anon = Session::new(SessionId([6; 16]), NOW - 10, None);
    let mut anon = anon;
    anon.scope = request_scope(&c, None);
    anon.client = anon.id.client_fingerprint(&token::ua_digest(b""));
    let v = token::encode(&anon, "__Host-session", &c.keys[0]).unwrap();
    let hdr = format!("__Host-session={v}; {fresh}");
    let dec = decide(&c, &get(vec![hdr.as_bytes()]));
    assert!(!counted(&dec, "session_guard.dbsc.rebound"));
}

#[test]
fn review_findings_stay_fixed() {
    let c = cfg(r#","require_bound_after_s":5"#);
    let d = device(1);
    let thumb = public(&d).thumbprint();
    let (_, bound) = session(&c, Some(&d));
    let (_, unbound) = session(&c, None);
    // A privilege signal on an unproven request does not lend the subject to the new session.
    let mut p = decide(&c, &get(vec![bound.as_bytes()])).pending;
    assert!(p.unproven);
    p.may_signal = true;
    p.next_id = Some(SessionId([5; 16]));
    let v = ResponseView {
        signals: vec![b"privilege"],
        set_cookies: vec![
            b"JSESSIONID=fresh; Path=/",
            b"__Host-session-bound=x; Path=/",
        ],
        now: NOW,
        ..Default::default()
    };
    let r = decide_response(&c, &p, &v);
    let list = match &r.edits.set_cookies {
        SetCookies::Replace(l) => l.clone(),
        other => panic!("{other:?}"),
    };
    let mesh = list
        .iter()
        .find(|v| v.starts_with(b"__Host-session="))
        .unwrap();
    let value = &mesh[15..mesh.iter().position(|&b| b == b';').unwrap()];
    let s = token::decode(value, b"__Host-session", &c.keys).unwrap();
    assert_eq!((s.subject, s.device), (None, None));
    // The app's new session cookie and an upstream's ticket never reach the browser.
    assert!(!list.iter().any(|v| v.starts_with(b"JSESSIONID=")));
    assert!(!list
        .iter()
        .any(|v| v.starts_with(b"__Host-session-bound=x")));
    let names: Vec<_> = r.record.counters.iter().map(|(c, _)| c.name()).collect();
    assert!(names.contains(&"session_guard.dbsc.app_cookie_withheld"));
    assert!(names.contains(&"session_guard.upstream_cookie.blocked"));
    // Rebind only from a ticket issued to this very session; one issued to another (a
    // leftover, or an attacker's) binds nothing.
    let other = dbsc::encode_ticket(&thumb, &[9; 8], NOW + 10, &c.keys[0]);
    let hdr = format!("{unbound}; {}={other}", dbsc::TICKET_COOKIE);
    let dec = decide(&c, &get(vec![hdr.as_bytes()]));
    assert!(!counted(&dec, "session_guard.dbsc.rebound"));
    // require_bound_after_s (5 s; the session is 10 s old): the session's own ticket keeps it
    // (it registered, its cookie lost the race) and binds it again; any other ticket does not.
    assert!(counted(&dec, "session_guard.session.invalid.unbound"));
    let hdr = format!("{unbound}; {}", ticket(&c, &d, NOW + 10));
    let dec = decide(&c, &get(vec![hdr.as_bytes()]));
    assert!(
        counted(&dec, "session_guard.dbsc.rebound"),
        "{:?}",
        dec.record.counters
    );
    assert_eq!(dec.pending.device, Some(thumb));
}
