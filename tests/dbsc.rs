//! Issue 29 end to end, the victim's side: device-bound sessions (DBSC) served by the filter in
//! the real Envoy, driven by a scripted client that follows the protocol as Chrome 148 sends it
//! with its own P-256 key (tests/common/dbsc.rs). Registration after a login, the ticket's
//! expiry and both refresh paths (the 403 challenge round trip, and the pre-seeded challenge),
//! both header token forms, a login while bound, unbound sessions as before, and the app's own
//! session cookies while unproven. The thieves: tests/dbsc_thieves.rs; logout, revocation,
//! monitor mode and floods: tests/dbsc_endings.rs.
//!
//! Ticket expiry: the minimum `dbsc.ticket_ttl_s` is 180 s and tests never wait for time to
//! pass (nor lower that minimum). A ticket's expiry is a cookie `Max-Age` (the browser stops
//! sending it) and a signed `exp` (the server refuses it after that). Here the browser's side:
//! the expired ticket is dropped from the jar. The server's side end to end:
//! tests/dbsc_thieves.rs `a_ticket_past_its_signed_expiry_proves_nothing` (tickets the test
//! makes with the site's key, expired and fresh); in the unit tests: src/dbsc/tests.rs
//! `ticket_round_trips_until_it_expires` and src/policy/dbsc_tests.rs
//! `a_bound_session_reaches_the_upstream_only_with_a_fresh_ticket`.
#![cfg(test)]

mod common;
use common::dbsc::*;
use common::*;

#[test]
fn the_client_parses_structured_fields_and_signs_like_chrome() {
    use p256::ecdsa::signature::Verifier as _;
    let list = parse_sf_list(r#"(ES256 RS256);path="/reg";challenge="c\"1", (ES256);path="/b""#)
        .expect("a valid list");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].items.len(), 2);
    assert_eq!(list[0].param_str("challenge"), Some("c\"1"));
    assert_eq!(list[1].param_str("path"), Some("/b"));
    let c = parse_sf_list(r#""abc";id="d1.k.x.y""#).expect("a challenge");
    assert_eq!(c[0].items, vec![Bare::Str("abc".into())]);
    assert_eq!(c[0].param_str("id"), Some("d1.k.x.y"));
    for bad in [
        r#"(ES256;path="/x""#,
        r#""open"#,
        "a,",
        r#"(ES256);path=/x"#,
    ] {
        assert!(parse_sf_list(bad).is_none(), "{bad}");
    }
    let d = Device::new();
    let jwt = d.registration_jwt("ch");
    let (h, p, sig) = jwt_parts(&jwt);
    assert_eq!(h["alg"], "ES256");
    assert_eq!(h["typ"], "dbsc+jwt");
    assert_eq!(h["jwk"], d.jwk());
    assert_eq!(p, serde_json::json!({"jti": "ch"}));
    let (input, _) = jwt.rsplit_once('.').expect("three parts");
    let signature = p256::ecdsa::Signature::from_slice(&sig).expect("raw r||s");
    assert!(d
        .verifying_key()
        .verify(input.as_bytes(), &signature)
        .is_ok());
    assert!(jwt_parts(&d.refresh_jwt("ch")).0.get("jwk").is_none());
}

/// Registration after a login, the session config, the ticket, the proven steady path, the
/// refresh with the pre-seeded challenge, the ticket's expiry (unproven), and Chrome's deferred
/// request with the 403 challenge round trip.
#[tokio::test(flavor = "multi_thread")]
async fn the_victim_registers_refreshes_and_stays_proven() {
    let m = dbsc_mesh(dbsc_config("", "")).await;
    let mut victim = DbscClient::new(m.envoy.port());
    victim.get("/").await;
    let login = log_in(&mut victim, "victim").await;
    let offer = registration(&login).expect("the login response offers DBSC");
    assert_eq!(offer.algorithms, ["ES256"]);
    assert_eq!(offer.path, START);
    assert!(offer.challenge.is_some(), "a registration challenge");
    victim.get("/").await;
    let id = seen(&m.app).id.expect("the logged-in session");
    assert_eq!(m.envoy.counter("session_guard.dbsc.offered").await, 1);

    let before = m.app.count();
    let reg = victim.register(&offer).await;
    assert_eq!(reg.status, 200, "{}", reg.body_str());
    assert_eq!(
        victim.statuses_since(0),
        [200],
        "no 403: the offer's challenge"
    );
    assert_eq!(m.app.count(), before, "the endpoint is never forwarded");
    assert!(reg
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    assert!(reg.header("cache-control").unwrap().contains("no-store"));
    let config = json_body(&reg).expect("a session config");
    let dbsc_id = config["session_identifier"].as_str().unwrap().to_owned();
    assert!(dbsc_id.starts_with("d1.k1."), "{dbsc_id}");
    assert_eq!(config["refresh_url"], REFRESH);
    assert_eq!(config["scope"], serde_json::json!({"include_site": false}));
    assert_eq!(
        config["credentials"],
        serde_json::json!([{"type": "cookie", "name": TICKET_COOKIE,
            "attributes": "Path=/; Secure; HttpOnly; SameSite=Lax"}])
    );
    let ticket = set_cookie(&reg, TICKET_COOKIE).expect("the ticket");
    for (attr, value) in [("Path", "/"), ("Secure", ""), ("HttpOnly", "")] {
        assert_eq!(
            cookie_attr(&ticket, attr).as_deref(),
            Some(value),
            "{ticket}"
        );
    }
    assert_eq!(cookie_attr(&ticket, "SameSite").as_deref(), Some("Lax"));
    assert_eq!(cookie_attr(&ticket, "Max-Age").as_deref(), Some("900"));
    assert!(
        set_cookie(&reg, SESSION_COOKIE).is_some(),
        "the mesh cookie, now bound"
    );
    let pre_seeded = challenges(&reg);
    assert_eq!(pre_seeded.len(), 1);
    assert_eq!(pre_seeded[0].id.as_deref(), Some(dbsc_id.as_str()));
    assert_eq!(m.envoy.counter("session_guard.dbsc.registered").await, 1);
    assert_eq!(m.envoy.counter("session_guard.dbsc.verified").await, 1);

    // Proven: the same session, neither the mesh cookie nor the ticket reaches the app.
    victim.get("/page").await;
    let s = seen(&m.app);
    assert_eq!(
        (s.id.as_deref(), s.subject.as_deref()),
        (Some(id.as_str()), Some("victim"))
    );
    assert_eq!(s.cookie(TICKET_COOKIE), None);
    assert_eq!(s.cookie(SESSION_COOKIE), None);

    // A refresh with the pre-seeded challenge: one request, 200, empty body, a new ticket.
    let n = victim.exchanges.len();
    assert_eq!(victim.refresh().await, Outcome::Refreshed);
    assert_eq!(victim.statuses_since(n), [200]);
    let r = &victim.exchanges[n].resp;
    assert!(r.body.is_empty(), "no config change: {}", r.body_str());
    assert!(set_cookie(r, TICKET_COOKIE).is_some());
    assert!(
        challenge_for(r, &dbsc_id).is_some(),
        "the next challenge pre-seeded"
    );
    assert_eq!(m.envoy.counter("session_guard.dbsc.refreshed").await, 1);

    // The ticket expires: the browser no longer sends it. A request sent anyway is unproven.
    victim.browser.jar.remove(TICKET_COOKIE);
    victim.defer = false;
    let resp = victim.get("/page").await;
    assert!(seen(&m.app).anonymous_without(&[]), "{:?}", seen(&m.app));
    assert!(
        set_cookie(&resp, SESSION_COOKIE).is_none(),
        "nothing minted or re-issued"
    );
    assert_eq!(m.envoy.counter("session_guard.dbsc.unproven").await, 1);

    // As Chrome does: the request waits for a refresh; with no cached challenge the refresh
    // takes the 403 round trip, then the request goes out with the new ticket.
    victim.defer = true;
    victim.session.as_mut().unwrap().challenge = None;
    let n = victim.exchanges.len();
    victim.get("/page").await;
    assert_eq!(victim.statuses_since(n), [403, 200]);
    assert!(!victim.exchanges[n].signed && victim.exchanges[n + 1].signed);
    let s = seen(&m.app);
    assert_eq!(
        (s.id.as_deref(), s.subject.as_deref()),
        (Some(id.as_str()), Some("victim"))
    );
    assert_eq!(m.envoy.counter("session_guard.dbsc.challenged").await, 1);
    assert_eq!(m.envoy.counter("session_guard.dbsc.refreshed").await, 2);
    assert_eq!(m.envoy.counter("session_guard.dbsc.unproven").await, 1);
}

/// Chrome 148 sends bare tokens; the spec's ABNF says sf-strings. Both work, for the JWT at
/// registration and refresh and for the session id, over HTTP/1.1 and HTTP/2.
#[tokio::test(flavor = "multi_thread")]
async fn both_header_token_forms_register_and_refresh() {
    let m = dbsc_mesh(dbsc_config("", "")).await;
    for (form, wire) in [(Form::Quoted, Wire::H1), (Form::Bare, Wire::H2)] {
        let client = DbscClient::new(m.envoy.port()).form(form).wire(wire);
        let mut c = register_as(&m, client, "victim").await;
        assert_eq!(c.refresh().await, Outcome::Refreshed, "{form:?} pre-seeded");
        c.session.as_mut().unwrap().challenge = None;
        let n = c.exchanges.len();
        assert_eq!(c.refresh().await, Outcome::Refreshed, "{form:?} round trip");
        assert_eq!(c.statuses_since(n), [403, 200], "{form:?}");
        c.get("/").await;
        assert_eq!(seen(&m.app).subject.as_deref(), Some("victim"), "{form:?}");
    }
    assert_eq!(m.envoy.counter("session_guard.dbsc.registered").await, 2);
}

/// A login (or privilege change) on a proven request keeps the binding: no new offer, the
/// ticket proves the new session, the DBSC session refreshes on. A login on an unproven request
/// (a browser that lost its key) gives an unbound session and a new offer.
#[tokio::test(flavor = "multi_thread")]
async fn a_login_while_bound_keeps_the_binding() {
    let m = dbsc_mesh(dbsc_config("", "")).await;
    let mut victim = bound_client(&m, "victim", Form::Bare).await;
    victim.get("/").await;
    let old_id = seen(&m.app).id.unwrap();

    let again = log_in(&mut victim, "victim").await;
    assert!(registration(&again).is_none(), "no new offer while bound");
    victim.defer = false;
    victim.get("/").await;
    let s = seen(&m.app);
    assert_ne!(s.id.as_deref(), Some(old_id.as_str()), "rotated");
    assert!(
        s.id.is_some(),
        "proven by the ticket issued before the login"
    );
    assert_eq!(s.subject.as_deref(), Some("victim"));
    assert_eq!(victim.refresh().await, Outcome::Refreshed, "the same key");
    // A privilege change, the same.
    let elevated = victim.get("/auth/elevate").await;
    assert!(set_cookie(&elevated, SESSION_COOKIE).is_some(), "rotated");
    assert!(
        registration(&elevated).is_none(),
        "no new offer while bound"
    );
    victim.get("/").await;
    assert_eq!(
        seen(&m.app).subject.as_deref(),
        Some("victim"),
        "still proven"
    );
    victim.browser.jar.remove(TICKET_COOKIE);
    victim.get("/").await;
    assert!(
        seen(&m.app).anonymous_without(&[]),
        "the new session is bound"
    );

    // The key is lost (e.g. a new profile): a login on the unproven request starts unbound.
    let relogin = log_in(&mut victim, "victim").await;
    assert!(registration(&relogin).is_some(), "offered again");
    victim.get("/").await;
    assert_eq!(
        seen(&m.app).subject.as_deref(),
        Some("victim"),
        "unbound: as before"
    );
    // A browser that did keep its key proves it at its next refresh: the new session is bound
    // to it again (as `/start` would), and a stolen copy of the unbound cookie dies with it.
    assert_eq!(
        victim.refresh().await,
        Outcome::Refreshed,
        "the key proven again binds the new session"
    );
    assert_eq!(m.envoy.counter("session_guard.dbsc.rebound").await, 1);
    assert_eq!(m.envoy.counter("session_guard.dbsc.offered").await, 2);
}

/// A session never bound (a browser without DBSC, or one that ignored the offer) behaves as
/// without DBSC: identity without a ticket, no unproven count, and a ticket cookie the client
/// sends anyway never reaches the app. `offer: "authenticated"` offers on later responses too.
#[tokio::test(flavor = "multi_thread")]
async fn an_unbound_session_behaves_as_before() {
    for offer in ["login", "authenticated"] {
        let m = dbsc_mesh(dbsc_config(&format!(r#","offer":"{offer}""#), "")).await;
        let mut plain = DbscClient::new(m.envoy.port());
        let login = log_in(&mut plain, "alice").await;
        assert!(registration(&login).is_some(), "{offer}: offered at login");
        let resp = plain.get("/").await;
        let s = seen(&m.app);
        assert!(s.id.is_some(), "{offer}");
        assert_eq!(s.subject.as_deref(), Some("alice"), "{offer}");
        assert!(
            registration(&resp).is_none(),
            "{offer}: never on a subresource"
        );
        // `authenticated` offers on document navigations only (each offer starts a
        // registration with a key of its own).
        let nav = plain
            .request(Req::get("/").header("sec-fetch-mode", "navigate"))
            .await;
        assert_eq!(
            registration(&nav).is_some(),
            offer == "authenticated",
            "{offer}"
        );
        plain.browser.jar.set(TICKET_COOKIE, "t1.k1.AAAA.AAAA");
        plain.browser.jar.set("lang", "en");
        plain.get("/").await;
        let s2 = seen(&m.app);
        assert_eq!((s2.id, s2.subject), (s.id, s.subject), "{offer}");
        assert_eq!(
            s2.cookies,
            [("lang".to_owned(), "en".to_owned())],
            "{offer}"
        );
        assert_eq!(m.envoy.counter("session_guard.dbsc.unproven").await, 0);
        // Anonymous sessions are never offered.
        let anon = send(m.envoy.port(), Req::get("/")).await;
        assert!(registration(&anon).is_none(), "{offer}: anonymous");
    }
}

/// The app's own session cookie (JSESSIONID, bound to the mesh session by app-cookie binding)
/// reaches the app only on proven requests; a cookie the app sets on an unproven response is
/// never bound.
#[tokio::test(flavor = "multi_thread")]
async fn app_session_cookies_are_removed_while_unproven() {
    let m = dbsc_mesh(dbsc_config("", "")).await;
    let mut victim = bound_client(&m, "victim", Form::Bare).await;
    victim.defer = false;
    let resp = victim.get("/set/JSESSIONID/app1").await;
    assert!(
        set_cookie(&resp, SESSION_COOKIE).is_some(),
        "the binding re-issues"
    );
    victim.browser.jar.set("lang", "en");
    victim.get("/page").await;
    assert_eq!(seen(&m.app).cookie("JSESSIONID"), Some("app1"), "proven");

    victim.browser.jar.remove(TICKET_COOKIE);
    victim.get("/page").await;
    let s = seen(&m.app);
    assert!(s.anonymous_without(&["JSESSIONID"]), "{s:?}");
    assert_eq!(s.cookie("lang"), Some("en"), "other cookies pass");
    let resp = victim.get("/set/JSESSIONID/app2").await;
    assert!(
        set_cookie(&resp, SESSION_COOKIE).is_none(),
        "no binding while unproven"
    );
    // Whatever became of the app's Set-Cookie, the browser holds app2 from now on.
    victim.browser.jar.set("JSESSIONID", "app2");

    assert_eq!(victim.refresh().await, Outcome::Refreshed);
    victim.get("/page").await;
    let s = seen(&m.app);
    assert_eq!(s.subject.as_deref(), Some("victim"));
    assert_eq!(
        s.cookie("JSESSIONID"),
        None,
        "app2 was set unproven: never bound"
    );
    assert!(m.envoy.counter("session_guard.app_cookie.unbound").await >= 1);
}

/// A registration challenge is bound to the session it was offered to: another session's gets
/// 403 with a challenge for this one, which the browser signs and retries (as Chrome does).
/// A `jwk` that is not the signer's key: 400, and the offer stays usable.
#[tokio::test(flavor = "multi_thread")]
async fn a_registration_challenge_is_bound_to_its_session() {
    let m = dbsc_mesh(dbsc_config("", "")).await;
    let mut alice = DbscClient::new(m.envoy.port());
    let alice_offer = registration(&log_in(&mut alice, "alice").await).expect("offered");
    let mut bob = DbscClient::new(m.envoy.port());
    let bob_offer = registration(&log_in(&mut bob, "bob").await).expect("offered");
    assert_ne!(alice_offer.challenge, bob_offer.challenge);

    let foreign = Registration {
        challenge: alice_offer.challenge.clone(),
        ..bob_offer.clone()
    };
    let resp = bob.register(&foreign).await;
    assert_eq!(bob.statuses_since(0), [403, 200], "{}", resp.body_str());
    assert!(bob.exchanges[0]
        .resp
        .header("cache-control")
        .unwrap()
        .contains("no-store"));
    assert_eq!(m.envoy.counter("session_guard.dbsc.challenged").await, 1);

    let signer = Device::new();
    let header = serde_json::json!({"alg": "ES256", "typ": "dbsc+jwt", "jwk": alice.device.jwk()});
    let jwt = signer.jwt(
        &header,
        &serde_json::json!({ "jti": alice_offer.challenge }),
    );
    let resp = alice.browser.request(start_req(Some(&jwt))).await;
    assert_eq!(resp.status, 400, "{}", resp.body_str());
    assert!(set_cookie(&resp, TICKET_COOKIE).is_none());
    assert_eq!(
        m.envoy
            .counter("session_guard.dbsc.invalid.signature")
            .await,
        1
    );
    assert_eq!(alice.register(&alice_offer).await.status, 200);
    assert_eq!(m.envoy.counter("session_guard.dbsc.registered").await, 2);
}

/// `dbsc.path` moves both endpoints; they are matched without the query; the default path is
/// then an ordinary path of the app.
#[tokio::test(flavor = "multi_thread")]
async fn a_custom_path_serves_both_endpoints_with_or_without_a_query() {
    let m = dbsc_mesh(dbsc_config(r#","path":"/_dbsc""#, "")).await;
    let mut c = DbscClient::new(m.envoy.port());
    let mut offer = registration(&log_in(&mut c, "victim").await).expect("offered");
    assert_eq!(offer.path, "/_dbsc/start");
    offer.path.push_str("?from=offer");
    let before = m.app.count();
    assert_eq!(c.register(&offer).await.status, 200);
    let session = c.session.as_mut().unwrap();
    assert_eq!(session.refresh_url, "/_dbsc/refresh");
    session.refresh_url.push_str("?x=1");
    assert_eq!(c.refresh().await, Outcome::Refreshed);
    assert_eq!(m.app.count(), before, "answered by the filter");
    let r = c.browser.request(Req::post(REFRESH, Vec::new())).await;
    assert_eq!((r.status, m.app.count()), (200, before + 1), "forwarded");
    assert_eq!(seen(&m.app).subject.as_deref(), Some("victim"));
}

/// The registration races a response that re-issues the unbound cookie (Chrome registers
/// beside following the login's redirect; that page may bind an app cookie, which re-issues
/// the mesh cookie): the unbound cookie lands last, next to the ticket. The filter binds the
/// session again from the ticket, on that very request, and the DBSC session keeps refreshing.
#[tokio::test(flavor = "multi_thread")]
async fn a_registration_overwritten_by_a_racing_reissue_is_bound_again() {
    let m = dbsc_mesh(dbsc_config("", "")).await;
    let mut victim = DbscClient::new(m.envoy.port());
    let login = log_in(&mut victim, "victim").await;
    let offer = registration(&login).expect("the login response offers DBSC");
    let unbound = victim.browser.jar.get(SESSION_COOKIE).unwrap().to_owned();
    assert_eq!(victim.register(&offer).await.status, 200);
    let bound = victim.browser.jar.get(SESSION_COOKIE).unwrap().to_owned();
    assert_ne!(bound, unbound);
    // The racing response's Set-Cookie wins: the jar holds the unbound value and the ticket.
    victim.browser.jar.set(SESSION_COOKIE, &unbound);
    let resp = victim.get("/").await;
    assert_eq!(seen(&m.app).subject.as_deref(), Some("victim"));
    assert_eq!(m.envoy.counter("session_guard.dbsc.rebound").await, 1);
    let again = set_cookie(&resp, SESSION_COOKIE).expect("the bound cookie, re-issued");
    assert_ne!(again, unbound);
    assert_eq!(victim.refresh().await, Outcome::Refreshed);
    // Without a ticket, the rebound session is unproven like any bound one.
    victim.browser.jar.remove(TICKET_COOKIE);
    victim.defer = false;
    victim.get("/").await;
    assert_eq!(seen(&m.app).subject, None);
}
