//! Device-bound sessions (W3C DBSC, docs/dbsc.md): the two endpoints the filter answers
//! itself, the proof every request of a bound session must carry (the ticket cookie), and
//! the offer on login responses. The wire formats and the one ECDSA check are `crate::dbsc`.
//!
//! The security order at the endpoints is written once, in [`start`] and [`refresh`]: the mesh
//! cookie's MAC (and every other session check), the session identifier's MAC, the
//! challenge's MAC and age, and only then the signature. A request that fails a MAC costs no
//! ECDSA verification (`dbsc.verified` counts those that ran).

use super::request::{checked_cookie, request_ctx};
use super::{session, Issue, LocalReply, MeshCookie, Pending, Record, RequestView, ResponseView};
use crate::config::{Config, Endpoint};
use crate::dbsc::{self, Bound, DeviceKey, Thumbprint, TICKET_COOKIE};
use crate::metrics::Counter;
use crate::set_cookie;
use crate::token::{self, Session, SessionId};
use std::borrow::Cow;

/// Answers `<dbsc.path>/start` or `/refresh`: the reply and the word for the access log.
pub fn endpoint(
    cfg: &Config,
    req: &RequestView<'_>,
    ep: Endpoint,
    rec: &mut Record,
) -> (LocalReply, &'static str) {
    if req.method != b"POST" {
        rec.count(Counter::DbscInvalidMethod);
        let headers = vec![
            ("allow", "POST".into()),
            ("cache-control", "no-store".into()),
        ];
        return (reply(405, headers, b""), "dbsc_refused");
    }
    let session = endpoint_session(cfg, req, rec);
    match ep {
        Endpoint::Start => start(cfg, req, session, rec),
        Endpoint::Refresh => refresh(cfg, req, session, rec),
    }
}

/// The request's mesh session, valid by every check a forwarded request gets (signature, age,
/// scope, revocation, client, this proxy's logout denylist) and authenticated.
fn endpoint_session(cfg: &Config, req: &RequestView<'_>, rec: &mut Record) -> Option<Session> {
    let host = req.authority.map(super::host_scope).unwrap_or_default();
    let ctx = request_ctx(cfg, req, &host);
    match checked_cookie(cfg, req, &ctx, rec).1 {
        session::CookieCheck::Valid { session, .. } if session.subject.is_some() => Some(session),
        _ => None,
    }
}

/// Registration: an authenticated, unbound session proves a device key over a registration
/// challenge bound to its ID; the session becomes bound to that key.
fn start(
    cfg: &Config,
    req: &RequestView<'_>,
    session: Option<Session>,
    rec: &mut Record,
) -> (LocalReply, &'static str) {
    let (Some(mut s), Some(key)) = (session, cfg.signing_key()) else {
        return refused(rec, Counter::DbscInvalidSession);
    };
    if s.device.is_some() {
        return refused(rec, Counter::DbscInvalidBound);
    }
    let now = req.now;
    let Some(jwt) = req.dbsc_response.and_then(dbsc::header_token) else {
        return challenged(
            rec,
            dbsc::challenge(Bound::Registration(&s.id), key, now),
            None,
        );
    };
    let Ok(proof) = dbsc::parse_proof(jwt, true) else {
        return refused(rec, Counter::DbscInvalidJwt);
    };
    let bound = Bound::Registration(&s.id);
    let ttl = dbsc::REGISTRATION_TTL_S;
    if dbsc::check_challenge(&proof.jti, bound, &cfg.keys, now, ttl).is_err() {
        rec.count(Counter::DbscInvalidChallenge);
        return challenged(rec, dbsc::challenge(bound, key, now), None);
    }
    let Some(device) = proof.jwk.clone() else {
        return refused(rec, Counter::DbscInvalidJwt);
    };
    if !verified(&device, &proof, rec) {
        return refused(rec, None);
    }
    let thumb = device.thumbprint();
    s.device = Some(thumb);
    s.last_used = now;
    let (session, sid) = (super::tag(&s.id), s.id);
    let mesh = super::mesh_set_cookie(cfg, &MeshCookie::Set(s), now);
    let Some(mesh) = mesh else {
        return refused(rec, Counter::InternalError);
    };
    rec.count(Counter::DbscRegistered);
    rec.info(format_args!(
        "dbsc: session bound to a device key session={session}"
    ));
    let id = dbsc::encode_id(&device, key);
    let body = session_config(cfg, &id).into_bytes();
    let mut headers = issued(cfg, &thumb, &sid, key, now, &id);
    headers.push(("set-cookie", mesh));
    headers.push(("content-type", "application/json".into()));
    (reply(200, headers, body), "dbsc_registered")
}

/// Refresh: the session identifier names the key, the session must still be valid and bound
/// to it, and a fresh proof over a refresh challenge earns a new ticket.
fn refresh(
    cfg: &Config,
    req: &RequestView<'_>,
    session: Option<Session>,
    rec: &mut Record,
) -> (LocalReply, &'static str) {
    let token = req.dbsc_session_id.and_then(dbsc::header_token);
    let Some((id, device)) = token.and_then(|t| Some((t, dbsc::decode_id(t, &cfg.keys)?))) else {
        return ended(rec, Counter::DbscInvalidId, token);
    };
    let (Some(mut s), Some(key)) = (session, cfg.signing_key()) else {
        return ended(rec, Counter::DbscInvalidSession, token);
    };
    let thumb = device.thumbprint();
    // An unbound session is bound by a valid proof (its cookie was overwritten by a racing
    // re-issue, see `rebind`); one bound to another key is never.
    let unbound = match s.device {
        Some(d) if d == thumb => false,
        None => true,
        Some(_) => return ended(rec, Counter::DbscInvalidBinding, token),
    };
    let now = req.now;
    let id = String::from_utf8_lossy(id).into_owned();
    let bound = Bound::Refresh(&thumb);
    let next = || dbsc::challenge(bound, key, now);
    let Some(jwt) = req.dbsc_response.and_then(dbsc::header_token) else {
        return challenged(rec, next(), Some(&id));
    };
    let Ok(proof) = dbsc::parse_proof(jwt, false) else {
        rec.count(Counter::DbscInvalidJwt);
        return challenged(rec, next(), Some(&id));
    };
    let ttl = refresh_ttl(cfg);
    if dbsc::check_challenge(&proof.jti, bound, &cfg.keys, now, ttl).is_err() {
        rec.count(Counter::DbscInvalidChallenge);
        return challenged(rec, next(), Some(&id));
    }
    if !verified(&device, &proof, rec) {
        return challenged(rec, next(), Some(&id));
    }
    rec.count(Counter::DbscRefreshed);
    rec.debug(|| "dbsc: ticket refreshed".to_string());
    let mut headers = issued(cfg, &thumb, &s.id, key, now, &id);
    if unbound {
        rec.count(Counter::DbscRebound);
        s.device = Some(thumb);
        s.last_used = now;
        headers.extend(
            super::mesh_set_cookie(cfg, &MeshCookie::Set(s), now).map(|c| ("set-cookie", c)),
        );
    }
    (reply(200, headers, b""), "dbsc_refreshed")
}

/// The one ECDSA verification, counted.
fn verified(device: &DeviceKey, proof: &dbsc::Proof<'_>, rec: &mut Record) -> bool {
    rec.count(Counter::DbscVerified);
    let ok = dbsc::verify_proof(device, proof).is_ok();
    if !ok {
        rec.count(Counter::DbscInvalidSignature);
    }
    ok
}

/// A refresh challenge stays valid for a ticket's lifetime and its grace: the browser signs
/// the pre-seeded one when the ticket runs out (or 120 s before).
fn refresh_ttl(cfg: &Config) -> u64 {
    cfg.dbsc.ticket_ttl_s.saturating_add(dbsc::TICKET_GRACE_S)
}

/// The headers of a successful registration or refresh: a new ticket, the next challenge.
fn issued(
    cfg: &Config,
    thumb: &Thumbprint,
    session: &SessionId,
    key: &crate::config::Key,
    now: u64,
    id: &str,
) -> Vec<(&'static str, String)> {
    let ttl = cfg.dbsc.ticket_ttl_s;
    let exp = now.saturating_add(ttl).saturating_add(dbsc::TICKET_GRACE_S);
    let ticket = dbsc::encode_ticket(thumb, &token::session_hash(session), exp, key);
    let next = dbsc::challenge(Bound::Refresh(thumb), key, now);
    vec![
        ("cache-control", "no-store".into()),
        ("set-cookie", ticket_cookie(cfg, &ticket, ttl)),
        (
            "secure-session-challenge",
            challenge_header(&next, Some(id)),
        ),
    ]
}

/// `Set-Cookie` for the ticket: the mesh cookie's attributes, its own name and lifetime.
pub fn ticket_cookie(cfg: &Config, value: &str, max_age_s: u64) -> String {
    set_cookie::named_cookie(TICKET_COOKIE, &cfg.cookie, value, max_age_s)
}

/// The session configuration a registration answers with (JSON; every value is ASCII from
/// our own alphabet: base64url, key ids, the validated path, the SameSite word).
fn session_config(cfg: &Config, id: &str) -> String {
    let same_site = cfg.cookie.same_site.as_str();
    format!(
        r#"{{"session_identifier":"{id}","refresh_url":"{}","scope":{{"include_site":false}},"credentials":[{{"type":"cookie","name":"{TICKET_COOKIE}","attributes":"Path=/; Secure; HttpOnly; SameSite={same_site}"}}]}}"#,
        cfg.dbsc.refresh_path
    )
}

/// `Secure-Session-Challenge: "<challenge>";id="<id>"`.
fn challenge_header(challenge: &str, id: Option<&str>) -> String {
    match id {
        Some(id) => format!("\"{challenge}\";id=\"{id}\""),
        None => format!("\"{challenge}\""),
    }
}

/// 403 with a new challenge: the browser signs it and retries.
fn challenged(rec: &mut Record, challenge: String, id: Option<&str>) -> (LocalReply, &'static str) {
    rec.count(Counter::DbscChallenged);
    let headers = vec![
        ("cache-control", "no-store".into()),
        ("secure-session-challenge", challenge_header(&challenge, id)),
    ];
    (reply(403, headers, b""), "dbsc_challenged")
}

/// `{"continue": false}`: the browser ends its device-bound session. A 200: a 4xx would end
/// it too, but a 5xx or a network error only skips the refresh. The identifier presented is
/// echoed (Chrome then records a server-requested end rather than invalid parameters); it is
/// a header token, so only base64url characters and dots.
fn ended(rec: &mut Record, why: Counter, id: Option<&[u8]>) -> (LocalReply, &'static str) {
    rec.count(why);
    rec.count(Counter::DbscEnded);
    rec.info(format_args!(
        "dbsc: device-bound session ended ({})",
        why.name()
    ));
    let headers = vec![
        ("cache-control", "no-store".into()),
        ("content-type", "application/json".into()),
    ];
    let body = match id.filter(|id| id.len() <= 512) {
        Some(id) => format!(
            r#"{{"session_identifier":"{}","continue":false}}"#,
            String::from_utf8_lossy(id)
        )
        .into_bytes(),
        None => b"{\"continue\":false}".to_vec(),
    };
    (reply(200, headers, body), "dbsc_ended")
}

/// A registration that creates no device-bound session (400: the browser just has none).
fn refused(rec: &mut Record, why: impl Into<Option<Counter>>) -> (LocalReply, &'static str) {
    if let Some(why) = why.into() {
        rec.count(why);
    }
    rec.info(format_args!("dbsc: registration refused"));
    let headers = vec![("cache-control", "no-store".into())];
    (reply(400, headers, b""), "dbsc_refused")
}

fn reply(
    status: u32,
    headers: Vec<(&'static str, String)>,
    body: impl Into<Cow<'static, [u8]>>,
) -> LocalReply {
    LocalReply {
        status,
        headers,
        body: body.into(),
    }
}

/// The `Secure-Session-Registration` header for a response whose session is authenticated and
/// unbound: on a login or privilege rotation, and with `dbsc.offer: "authenticated"` on the
/// response to a document navigation of such a session (never a 304 or 206, nor one a shared
/// cache may store; the response is then made uncacheable by shared caches, as for a cookie).
pub fn offer(
    cfg: &Config,
    p: &Pending,
    mesh: &MeshCookie,
    rotated: bool,
    resp: &ResponseView<'_>,
    rec: &mut Record,
) -> Option<(&'static str, String)> {
    if !cfg.dbsc.enabled {
        return None;
    }
    let now = resp.now;
    let cacheable = super::cache::shared_cacheable(resp) || super::cache::partial(resp.status);
    // A login rotates into a fresh session (unbound when the request was unproven: a browser
    // that lost its key registers again). Otherwise only `offer: "authenticated"` offers.
    let s = match mesh {
        MeshCookie::Set(s) if rotated => s,
        // Only document navigations: every subresource offering would start registrations
        // in parallel, each with its own key.
        _ if cfg.dbsc.offer != crate::config::Offer::Authenticated
            || cacheable
            || p.unproven
            || !p.navigation =>
        {
            return None
        }
        MeshCookie::Set(s) => s,
        MeshCookie::Keep if p.issue != Issue::Minted => p.session.as_ref()?,
        _ => return None,
    };
    if s.subject.is_none() || s.device.is_some() {
        return None;
    }
    let key = cfg.signing_key()?;
    let challenge = dbsc::challenge(Bound::Registration(&s.id), key, now);
    rec.count(Counter::DbscOffered);
    let path = &cfg.dbsc.start_path;
    let value = format!("(ES256);path=\"{path}\";challenge=\"{challenge}\"");
    Some(("secure-session-registration", value))
}

/// `Set-Cookie` that expires the ticket (with the mesh cookie, on logout).
pub fn expired_ticket(cfg: &Config) -> Option<String> {
    cfg.dbsc.enabled.then(|| ticket_cookie(cfg, "", 0))
}
