//! Issue 29 end to end, the thieves: what a stolen cookie gives without DBSC (everything, from
//! any client) and with it: (1) copied cookies (mesh + ticket) work only while the ticket is
//! fresh, then no identity reaches the app; (2) a refresh without the key (no JWT, garbage,
//! replayed JWTs) gets 403 and never a ticket; (3) a refresh, or a re-registration, signed by
//! the thief's own key gets nothing either; a forged session id ends the DBSC session
//! (`{"continue":false}`). The thief holds everything an infostealer copies off the disk: the
//! cookie jar and the DBSC session id, never the device key.
//!
//! Time: tests never wait the 180 s minimum of `dbsc.ticket_ttl_s`. A ticket's expiry is the
//! browser's side (the expired ticket dropped from the jar) and the server's (a signed `exp`):
//! the test makes tickets and challenges with the site's key (its own test key), in the
//! design's format written here from the design, to present an expired ticket and a stale
//! challenge, each with a fresh one as the control that the format is right.
#![cfg(test)]

mod common;
use common::dbsc::*;
use common::*;
use serde_json::json;

const THIEF_UA: &str = "Mozilla/5.0 (thief's machine)";

/// The thief's browser: a copy of `victim`'s cookie jar (optionally without the ticket).
fn copy_jar(victim: &DbscClient, with_ticket: bool) -> Browser {
    let mut thief = victim.browser.clone();
    if !with_ticket {
        thief.jar.remove(TICKET_COOKIE);
    }
    thief
}

/// A GET from the thief's machine with its jar: what the app saw.
async fn thief_get(m: &Mesh, thief: &mut Browser, path: &str) -> (Resp, Seen) {
    let before = m.app.count();
    let resp = thief
        .request(Req::get(path).header("user-agent", THIEF_UA))
        .await;
    assert_eq!(m.app.count(), before + 1, "forwarded");
    (resp, seen(&m.app))
}

/// The attack, first without DBSC: a copied mesh cookie works from another machine for as long
/// as the session lives. Then with DBSC: the same copy (mesh cookie and ticket) works only
/// while the ticket is fresh; once it is gone, no identity, no app session cookie, nothing
/// minted, while the victim (who holds the key) refreshes and stays proven.
#[tokio::test(flavor = "multi_thread")]
async fn copied_cookies_work_without_dbsc_and_die_with_the_ticket_with_it() {
    let without = dbsc_mesh(
        r#"{"keys":[{"id":"k1","secret_env":"SESSION_GUARD_KEY"}],"signal":{"trusted_clusters":["auth"]}}"#.into(),
    )
    .await;
    let mut victim = DbscClient::new(without.envoy.port());
    let login = log_in(&mut victim, "victim").await;
    assert!(registration(&login).is_none(), "no DBSC, no offer");
    victim.get("/set/JSESSIONID/app1").await;
    let mut thief = copy_jar(&victim, true);
    for _ in 0..3 {
        let (_, s) = thief_get(&without, &mut thief, "/account").await;
        assert_eq!(
            s.subject.as_deref(),
            Some("victim"),
            "the theft works without DBSC"
        );
        assert_eq!(s.cookie("JSESSIONID"), Some("app1"));
    }

    let m = dbsc_mesh(dbsc_config("", "")).await;
    let mut victim = bound_client(&m, "victim", Form::Bare).await;
    victim.get("/set/JSESSIONID/app1").await;
    victim.get("/").await;
    let victim_id = seen(&m.app).id.expect("the victim's session");
    let mut thief = copy_jar(&victim, true);
    let (_, s) = thief_get(&m, &mut thief, "/account").await;
    assert_eq!(
        s.subject.as_deref(),
        Some("victim"),
        "while the ticket is fresh"
    );
    assert_eq!(s.cookie("JSESSIONID"), Some("app1"));

    // The ticket expires; the thief's browser stops sending it. The victim's refreshes.
    thief.jar.remove(TICKET_COOKIE);
    victim.browser.jar.remove(TICKET_COOKIE);
    for _ in 0..3 {
        let (resp, s) = thief_get(&m, &mut thief, "/account").await;
        let request_id = m.app.last().unwrap().header("x-request-id").unwrap();
        let line = common::access_log::access_line(&m.envoy, &request_id).await;
        assert_eq!(line.decision, "unproven", "{}", line.raw);
        assert!(s.anonymous_without(&["JSESSIONID"]), "{s:?}");
        assert_eq!(s.cookie(SESSION_COOKIE), None);
        assert!(
            set_cookie(&resp, SESSION_COOKIE).is_none(),
            "nothing minted"
        );
        assert!(set_cookie(&resp, TICKET_COOKIE).is_none());
        victim.get("/account").await;
        let v = seen(&m.app);
        assert_eq!(
            v.id.as_deref(),
            Some(victim_id.as_str()),
            "the victim stays proven"
        );
        assert_eq!(v.cookie("JSESSIONID"), Some("app1"));
        victim.browser.jar.remove(TICKET_COOKIE);
    }
    assert_eq!(m.envoy.counter("session_guard.dbsc.unproven").await, 3);
}

/// A refresh without the key: no JWT, garbage, `alg: none`, RS256, a forged signature, the
/// victim's registration JWT replayed, the victim's refresh JWT replayed over a new challenge.
/// Each gets 403 with a new challenge, never a ticket; the thief stays unproven.
#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_without_the_key_gets_403_and_never_a_ticket() {
    let m = dbsc_mesh(dbsc_config("", "")).await;
    let mut victim = bound_client(&m, "victim", Form::Bare).await;
    assert_eq!(victim.refresh().await, Outcome::Refreshed);
    let reg_jwt = victim.exchanges[0]
        .jwt
        .clone()
        .expect("the registration JWT");
    let refresh_jwt = victim
        .exchanges
        .last()
        .unwrap()
        .jwt
        .clone()
        .expect("signed");
    let id = victim.id();
    let thumb = thumbprint(&victim.device);
    let mut thief = copy_jar(&victim, false);
    let refreshed = m.envoy.counter("session_guard.dbsc.refreshed").await;

    // A challenge is a MAC of (the key's thumbprint, the second): the thief asks until it gets
    // one other than the victim signed (within one second they are equal, and an unchanged
    // JWT over a still-fresh challenge is a replay the stateless design accepts: it is on the
    // wire, never on the disk an infostealer copies).
    let signed = jwt_parts(&refresh_jwt).1["jti"].clone();
    let c = loop {
        let first = thief.request(refresh_req(Some(&id), None)).await;
        assert_eq!(first.status, 403, "{}", first.body_str());
        let c = challenge_for(&first, &id).expect("a challenge for this session");
        if signed != c.as_str() {
            break c;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let header = |alg: &str| b64(json!({"alg": alg, "typ": "dbsc+jwt"}).to_string());
    let payload = b64(json!({ "jti": c }).to_string());
    let forged = [
        "garbage".to_owned(),
        "a.b.c".to_owned(),
        format!("{}.{payload}.", header("none")),
        format!("{}.{payload}.{}", header("RS256"), b64([7u8; 256])),
        format!("{}.{payload}.{}", header("ES256"), b64([0u8; 64])),
        reg_jwt,
        with_payload(&refresh_jwt, &json!({ "jti": c })),
        // JWTs the victim signed over a challenge of long ago, or one from the future.
        victim
            .device
            .refresh_jwt(&site_refresh_challenge(&thumb, now_s() - 1000)),
        victim
            .device
            .refresh_jwt(&site_refresh_challenge(&thumb, now_s() + 1000)),
    ];
    for jwt in &forged {
        let resp = thief.request(refresh_req(Some(&id), Some(jwt))).await;
        assert_eq!(resp.status, 403, "{jwt}: {}", resp.body_str());
        assert!(
            challenge_for(&resp, &id).is_some(),
            "{jwt}: a new challenge"
        );
        assert!(
            set_cookie(&resp, TICKET_COOKIE).is_none(),
            "{jwt}: a ticket"
        );
        assert!(!is_continue_false(&resp));
        let (_, s) = thief_get(&m, &mut thief, "/").await;
        assert!(s.anonymous_without(&[]), "{jwt}: {s:?}");
    }
    assert_eq!(
        m.envoy.counter("session_guard.dbsc.refreshed").await,
        refreshed,
        "no refresh succeeded"
    );
    assert!(
        m.envoy
            .counter("session_guard.dbsc.invalid.challenge")
            .await
            >= 2
    );
    // The victim is not hurt by any of it; and a challenge made now in the format the stale
    // one was made in works (so the stale one was refused for its age).
    victim.session.as_mut().unwrap().challenge = Some(site_refresh_challenge(&thumb, now_s()));
    let n = victim.exchanges.len();
    assert_eq!(victim.refresh().await, Outcome::Refreshed);
    assert_eq!(victim.statuses_since(n), [200]);
}

/// The thief's own key: signing the genuine challenge, sending its `jwk` at refresh,
/// re-registering the stolen session with the victim's (still fresh) offer, and presenting the
/// thief's own DBSC session (registered for its own account) with the victim's cookies, or its
/// own ticket with the victim's mesh cookie: nothing proves the victim's session.
#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_signed_by_the_thiefs_own_key_gets_nothing() {
    let m = dbsc_mesh(dbsc_config("", "")).await;
    let mut victim = DbscClient::new(m.envoy.port());
    let offer = registration(&log_in(&mut victim, "victim").await).expect("offered");
    assert_eq!(victim.register(&offer).await.status, 200);
    let id = victim.id();
    let mut thief = copy_jar(&victim, false);
    let key = Device::new();

    let c = challenge_for(&thief.request(refresh_req(Some(&id), None)).await, &id).unwrap();
    for jwt in [key.refresh_jwt(&c), key.registration_jwt(&c)] {
        let resp = thief.request(refresh_req(Some(&id), Some(&jwt))).await;
        assert_eq!(resp.status, 403, "{}", resp.body_str());
        assert!(set_cookie(&resp, TICKET_COOKIE).is_none());
    }

    // Rebinding the stolen session to the thief's key: already bound.
    let reoffer = offer.challenge.as_deref().unwrap();
    for jwt in [None, Some(key.registration_jwt(reoffer))] {
        let resp = thief.request(start_req(jwt.as_deref())).await;
        assert_eq!(resp.status, 400, "{}", resp.body_str());
        assert!(set_cookie(&resp, TICKET_COOKIE).is_none());
        assert!(set_cookie(&resp, SESSION_COOKIE).is_none());
    }
    assert!(m.envoy.counter("session_guard.dbsc.invalid.bound").await >= 2);

    // The thief's own DBSC session, for its own account and key.
    let mut own = DbscClient::new(m.envoy.port());
    own.device = key.clone();
    let offer = registration(&log_in(&mut own, "mallory").await).expect("offered");
    assert_eq!(own.register(&offer).await.status, 200);
    let own_c = own.session.as_ref().unwrap().challenge.clone().unwrap();
    let own_jwt = key.refresh_jwt(&own_c);
    let resp = thief
        .request(refresh_req(Some(&own.id()), Some(&own_jwt)))
        .await;
    assert!(
        is_continue_false(&resp),
        "another key's id: {}",
        resp.body_str()
    );
    assert!(set_cookie(&resp, TICKET_COOKIE).is_none());
    // Its own (valid) ticket next to the victim's mesh cookie proves nothing.
    let own_ticket = own.browser.jar.get(TICKET_COOKIE).unwrap().to_owned();
    thief.jar.set(TICKET_COOKIE, &own_ticket);
    let (_, s) = thief_get(&m, &mut thief, "/").await;
    assert!(s.anonymous_without(&[]), "{s:?}");
    assert_eq!(m.envoy.counter("session_guard.dbsc.refreshed").await, 0);
    // Control: the victim refreshes.
    assert_eq!(victim.refresh().await, Outcome::Refreshed);
}

/// A forged `Sec-Secure-Session-Id`, even with the victim's cookies and a JWT from the victim's
/// own key: `{"continue": false}`, no ticket, before any signature check.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_session_id_ends_the_dbsc_session() {
    let m = dbsc_mesh(dbsc_config("", "")).await;
    let victim = bound_client(&m, "victim", Form::Bare).await;
    let other = bound_client(&m, "bob", Form::Bare).await;
    let id = victim.id();
    let parts: Vec<&str> = id.split('.').collect();
    assert_eq!(parts.len(), 4, "d1.<kid>.<key>.<tag>: {id}");
    let flip = |s: &str, i: usize| {
        let mut b = s.as_bytes().to_vec();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let other_parts: Vec<String> = other.id().split('.').map(str::to_owned).collect();
    let forged = [
        format!("d1.{}.{}.{}", parts[1], parts[2], flip(parts[3], 0)),
        format!("d1.{}.{}.{}", parts[1], flip(parts[2], 10), parts[3]),
        format!("d1.k9.{}.{}", parts[2], parts[3]),
        format!("d2.{}.{}.{}", parts[1], parts[2], parts[3]),
        format!("d1.{}.{}.{}", parts[1], other_parts[2], parts[3]),
        id[..id.len() - 3].to_owned(),
        "garbage".to_owned(),
    ];
    let verified = m.envoy.counter("session_guard.dbsc.verified").await;
    let c = victim.session.as_ref().unwrap().challenge.clone().unwrap();
    let jwt = victim.device.refresh_jwt(&c);
    let mut holder = victim.browser.clone();
    for f in &forged {
        let resp = holder.request(refresh_req(Some(f), Some(&jwt))).await;
        assert!(
            is_continue_false(&resp),
            "{f}: {} {}",
            resp.status,
            resp.body_str()
        );
        assert!(set_cookie(&resp, TICKET_COOKIE).is_none(), "{f}");
    }
    let ended = m.envoy.counter("session_guard.dbsc.ended").await;
    assert_eq!(ended, forged.len() as u64);
    assert!(m.envoy.counter("session_guard.dbsc.invalid.id").await >= forged.len() as u64);
    assert_eq!(
        m.envoy.counter("session_guard.dbsc.verified").await,
        verified,
        "the id's MAC is checked before the signature"
    );
    // Control: the genuine id with the same JWT refreshes.
    let resp = holder.request(refresh_req(Some(&id), Some(&jwt))).await;
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    assert!(set_cookie(&resp, TICKET_COOKIE).is_some());
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The ticket's expiry is signed: a thief whose client keeps sending a ticket past its
/// `Max-Age` (a script ignores it) gets nothing once the signed `exp` has passed. Tests never
/// wait the 4 minutes (`ticket_ttl_s: 180`, the minimum, plus the 60 s grace): the site's key (the test's own) makes tickets for the victim's key in the
/// design's format, one that expired, and as the control one still fresh. The ticket the mesh
/// issued is checked against the same format first.
#[tokio::test(flavor = "multi_thread")]
async fn a_ticket_past_its_signed_expiry_proves_nothing() {
    let m = dbsc_mesh(dbsc_config(r#","ticket_ttl_s":180"#, "")).await;
    let t0 = now_s();
    let victim = bound_client(&m, "victim", Form::Bare).await;
    let t1 = now_s();
    let line = set_cookie(&victim.exchanges[0].resp, TICKET_COOKIE).unwrap();
    assert_eq!(cookie_attr(&line, "Max-Age").as_deref(), Some("180"));
    let thumb = thumbprint(&victim.device);
    let issued = victim.browser.jar.get(TICKET_COOKIE).unwrap();
    let (exp, of, session) = open_site_ticket(issued).expect("the design's format, the site's key");
    assert_eq!(of, thumb, "issued for the device's key");
    assert!(
        (t0 + 240..=t1 + 240).contains(&exp),
        "exp = issue + ticket_ttl_s + 60: {exp}"
    );
    let mut thief = copy_jar(&victim, false);
    for (exp, proven) in [
        (now_s() + 600, true),
        (now_s() - 1, false),
        (now_s(), false),
    ] {
        thief
            .jar
            .set(TICKET_COOKIE, &site_ticket(&thumb, &session, exp));
        let (_, s) = thief_get(&m, &mut thief, "/").await;
        assert_eq!(s.subject.is_some(), proven, "exp {exp}: {s:?}");
        assert_eq!(s.id.is_some(), proven, "exp {exp}");
        assert_eq!(s.cookie(TICKET_COOKIE), None, "never forwarded");
    }
    assert_eq!(
        m.envoy.counter("session_guard.dbsc.invalid.ticket").await,
        2
    );
}
