//! The request phase, as named steps. [`decide_request`] holds their order; each step is a
//! plain function of the configuration and the request's headers.

use super::proof::Ticket;
use super::session::CookieCheck;
use super::Proven;
use super::{
    app_cookies, printable, session, tag, Ctx, Issue, LocalReply, Pending, Record, RequestDecision,
    RequestEdits, RequestOutcome, RequestView,
};
use crate::config::{Anonymous, ClientChange, Config, UrlAction};
use crate::cookies::{self, Found, Rewrite};
use crate::metrics::Counter;
use crate::token::{self, Session, SessionId};
use crate::url;

/// Draws 16 bytes from the VM's CSPRNG; `None` when randomness is unavailable.
pub type RandomId<'a> = &'a mut dyn FnMut() -> Option<[u8; token::ID_LEN]>;

/// Decides a request. `random_id` draws 16 bytes from the VM's CSPRNG.
pub fn decide_request(
    cfg: &Config,
    req: &RequestView<'_>,
    random_id: RandomId<'_>,
) -> RequestDecision {
    let mut rec = Record::new(req.debug_logs, printable(req.request_id));
    let mut edits = RequestEdits::default();

    // The filter's own endpoints, then defense 1: session IDs never travel in URLs upstream.
    let exempt = match front(cfg, req, &mut edits, &mut rec) {
        Ok(exempt) => exempt,
        Err(answered) => return stop(*answered, req.now, rec),
    };

    // Defense 2: the only session an upstream sees was minted, and signed, by the mesh: the
    // cookie (session.rs), the device key's ticket (dbsc.rs), the app cookies bound to it.
    let host = req.authority.map(super::host_scope).unwrap_or_default();
    let ctx = request_ctx(cfg, req, &host);
    let (found, check, valid_hash) = checked_cookie(cfg, req, &ctx, &mut rec);
    let checked = check.decision();
    let (mut session, mut issue) = session::adopt_session(check, &mut rec);
    let proven = super::proof::prove(cfg, session.as_mut(), &mut issue, ctx.ticket, &mut rec);
    let tickets = ctx.ticket != Ticket::Absent;
    let without_mesh = cookie_header_without_mesh_cookie(cfg, &req.cookies, found.count, tickets);
    if proven == Proven::Unproven {
        return super::proof::unproven(cfg, req, edits, session, without_mesh, &ctx, rec);
    }
    let who = who_mints(cfg, req, exempt);
    let may_mint = who != Mints::Nobody;
    let (mut session, mut issue) = mint(may_mint, session, issue, &ctx, random_id, &mut rec);
    let decision = decision_word(issue, checked, exempt);
    let (current, s) = (without_mesh, session.as_mut());
    let app = app_step(cfg, req, current, s, &mut issue, exempt, &mut rec);
    edits.cookies = app.cookies;

    // What upstreams get: only the mesh's word on sessions.
    edits.remove = strip_spoofed(&req.spoofed, &mut rec);
    edits.set = upstream_headers(cfg, session.as_ref());
    let pending = Pending {
        session_hash: valid_hash.or_else(|| session.as_ref().map(|s| token::session_hash(&s.id))),
        scope: ctx.scope,
        ua: ctx.ua,
        app_cookies: app.kept,
        spare_id: spare_id(cfg, session.is_none(), random_id),
        decision,
        navigation_only: who == Mints::OnCookie,
        device: super::proof::device_kept(session.as_ref(), proven),
        navigation: cfg.dbsc.enabled && navigation(req),
        ..pending(session, issue, rec.request_id.clone(), req.now)
    };
    let outcome = RequestOutcome::Forward(edits);
    RequestDecision {
        outcome,
        pending,
        record: rec,
    }
}

/// The app session cookies bound to the session (`app_cookies.rs`). An exempt path never
/// carries the mesh cookie: a re-issue waits for another path.
fn app_step(
    cfg: &Config,
    req: &RequestView<'_>,
    current: Option<Vec<Vec<u8>>>,
    session: Option<&mut Session>,
    issue: &mut Issue,
    exempt: bool,
    rec: &mut Record,
) -> app_cookies::Filtered {
    let app = app_cookies::filter_request(cfg, &req.cookies, current, session, issue, req.now, rec);
    if exempt && *issue == Issue::Reissued {
        *issue = Issue::None;
    }
    app
}

/// The steps before any session is looked at: the DBSC endpoints (answered in every mode:
/// nothing may mint, redirect or strip on them), then the URL defense, the `Referer`, and
/// whether the path is exempt. `Err`: the request is answered here (boxed: the rare path).
fn front(
    cfg: &Config,
    req: &RequestView<'_>,
    edits: &mut RequestEdits,
    rec: &mut Record,
) -> Result<bool, Box<(RequestOutcome, &'static str)>> {
    if let Some(ep) = req.path.and_then(|p| cfg.dbsc.endpoint(p)) {
        let (r, word) = super::dbsc::endpoint(cfg, req, ep, rec);
        return Err(Box::new((RequestOutcome::Answer(r), word)));
    }
    match url_defense(cfg, req.method, req.path, rec) {
        UrlStep::Clean => {}
        UrlStep::Forward(path) => edits.path = Some(path),
        UrlStep::Reply((r, word)) => return Err(Box::new((RequestOutcome::Reply(r), word))),
    }
    edits.referer = scrub_referer(cfg, req.referer, rec);
    Ok(exempt_path(cfg, edits.path.as_deref().or(req.path), rec))
}

/// The request's mesh cookies and what they are worth, by every check (session.rs, then this
/// proxy's logout denylist): shared by forwarded requests and the DBSC endpoints. Also the
/// valid session's hash.
pub(super) fn checked_cookie<'a>(
    cfg: &Config,
    req: &RequestView<'a>,
    ctx: &Ctx<'_>,
    rec: &mut Record,
) -> (Found<'a>, CookieCheck<'a>, Option<[u8; 8]>) {
    let found = cookies::find(&req.cookies, cfg.cookie.name.as_bytes());
    let check = session::verify_mesh_cookie(cfg, &found, ctx);
    let (check, valid_hash) = logged_out(check, &found, req, rec);
    (found, check, valid_hash)
}

/// The word a request's decision is published as (filter state, access log).
fn decision_word(issue: Issue, checked: &'static str, exempt: bool) -> &'static str {
    match (issue == Issue::Minted && checked == "none", exempt) {
        (true, _) => "minted",
        (false, true) if checked == "none" => "exempt",
        _ => checked,
    }
}

/// A response that binds an app cookie needs a session, whatever `cookie.anonymous` says: an
/// ID drawn for it when the request has none.
fn spare_id(cfg: &Config, no_session: bool, random_id: RandomId<'_>) -> Option<SessionId> {
    (no_session && cfg.app_cookies_enabled())
        .then(random_id)
        .flatten()
        .map(SessionId)
}

/// A valid session that a logout ended on this proxy is revoked (`logout.refused`): the
/// proxy's denylist is asked only here, for a session valid by every other check. Also returns
/// the valid session's hash (computed once per request).
fn logged_out<'a>(
    check: CookieCheck<'a>,
    found: &Found<'a>,
    req: &RequestView<'_>,
    rec: &mut Record,
) -> (CookieCheck<'a>, Option<[u8; 8]>) {
    let (CookieCheck::Valid { session, .. }, Some(c)) = (&check, &found.first) else {
        return (check, None);
    };
    let hash = token::session_hash(&session.id);
    if !req.denylist.holds(&hash) {
        return (check, Some(hash));
    }
    rec.count(Counter::LogoutRefused);
    let value = c.value;
    let revoked = CookieCheck::Invalid {
        reason: token::Invalid::Revoked,
        value,
        session: Some(hash),
    };
    (revoked, None)
}

/// What the validator needs from the request: its scope and its client's fingerprint input.
pub(super) fn request_ctx<'a>(cfg: &Config, req: &RequestView<'_>, host: &'a [u8]) -> Ctx<'a> {
    Ctx {
        now: req.now,
        scope: super::scope::scope_for_host(cfg, host),
        host,
        ua: (cfg.detect.client_change != ClientChange::Off)
            .then(|| token::ua_digest(req.user_agent.unwrap_or_default())),
        ticket: Ticket::of(cfg, &req.cookies, req.now),
    }
}

/// What the URL defense decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlStep {
    /// No session parameter in the URL.
    Clean,
    /// Forward with this `:path`, session parameters removed.
    Forward(Vec<u8>),
    /// Answer locally (redirect or reject), with the word for `session_guard.decision`.
    Reply((LocalReply, &'static str)),
}

/// Defense 1: strip session parameters from `:path`, or answer with a redirect to the clean
/// URL (GET/HEAD only) or a 400, as `url.action` says.
pub fn url_defense(cfg: &Config, method: &[u8], path: Option<&[u8]>, rec: &mut Record) -> UrlStep {
    let semicolon = cfg.url.query_semicolon;
    let Some(s) = path.and_then(|p| url::strip_path_with(p, &cfg.url.params, semicolon)) else {
        return UrlStep::Clean;
    };
    rec.count_n(Counter::UrlParamsRemoved, s.removed as u64);
    let n = s.removed;
    if s.unsafe_path {
        // In every url.action: the stripped path was never normalized by Envoy.
        rec.count(Counter::UrlUnsafePath);
        rec.info(format_args!(
            "url refused: removing session parameters would leave an empty, . or .. segment"
        ));
        let body = b"session identifiers are not accepted in this URL\n";
        return UrlStep::Reply((bad_request(body), "url_unsafe"));
    }
    let is_get = method == b"GET" || method == b"HEAD";
    match cfg.url.action {
        UrlAction::Reject => {
            rec.count(Counter::UrlRejected);
            rec.info(format_args!(
                "url rejected: {n} session parameter(s) in the URL"
            ));
            let body = b"session identifiers are not accepted in URLs\n";
            UrlStep::Reply((bad_request(body), "url_rejected"))
        }
        UrlAction::Redirect if is_get => {
            rec.count(Counter::UrlRedirected);
            rec.info(format_args!(
                "url redirected: {n} session parameter(s) removed"
            ));
            let reply = LocalReply {
                status: 302,
                headers: vec![
                    ("location", url::location_value(&s.value)),
                    ("cache-control", "no-store".into()),
                ],
                body: b"".into(),
            };
            UrlStep::Reply((reply, "url_redirected"))
        }
        _ => {
            rec.count(Counter::UrlStripped);
            rec.info(format_args!(
                "url stripped: {n} session parameter(s) removed"
            ));
            UrlStep::Forward(s.value)
        }
    }
}

#[cold]
fn bad_request(body: &'static [u8]) -> LocalReply {
    LocalReply {
        status: 400,
        headers: vec![
            ("content-type", "text/plain; charset=utf-8".into()),
            ("cache-control", "no-store".into()),
        ],
        body: body.into(),
    }
}

/// The `Referer` with the same parameters removed; `None`: forward it as it is.
pub fn scrub_referer(cfg: &Config, referer: Option<&[u8]>, rec: &mut Record) -> Option<Vec<u8>> {
    let s =
        referer.and_then(|r| url::strip_referer(r, &cfg.url.params, cfg.url.query_semicolon))?;
    rec.count(Counter::RefererScrubbed);
    rec.debug(|| "referer scrubbed".to_string());
    Some(s.value)
}

/// The `Cookie` headers without the mesh cookie (upstreams get the session headers instead)
/// and, when the request has one (`tickets`), the DBSC ticket; `None` when there is none to
/// remove.
pub fn cookie_header_without_mesh_cookie(
    cfg: &Config,
    headers: &[&[u8]],
    mesh_cookies: usize,
    tickets: bool,
) -> Option<Vec<Vec<u8>>> {
    if mesh_cookies == 0 && !tickets {
        return None;
    }
    let name = cfg.cookie.name.as_bytes();
    let ticket = crate::dbsc::TICKET_COOKIE.as_bytes();
    let ours = |c: &cookies::Crumb<'_>| {
        c.name.eq_ignore_ascii_case(name) || (tickets && c.name.eq_ignore_ascii_case(ticket))
    };
    let list = headers
        .iter()
        .filter_map(|h| match cookies::retain(h, |c| !ours(c)) {
            Rewrite::Keep => Some(h.to_vec()),
            Rewrite::Drop => None,
            Rewrite::Replace(v) => Some(v),
        })
        .collect();
    Some(list)
}

/// `exempt.paths`: whether the request's path (after the URL defense) is exempt; counted.
#[inline(never)]
pub fn exempt_path(cfg: &Config, path: Option<&[u8]>, rec: &mut Record) -> bool {
    let exempt = path.is_some_and(|p| cfg.exempt(p));
    if exempt {
        rec.count(Counter::Exempt);
    }
    exempt
}

/// For whom a request without a valid session gets a fresh ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mints {
    /// Committed by the response unless it is shared-cacheable.
    Anyone,
    /// `cookie.anonymous: "navigate"`, not a navigation: committed only by a response that
    /// sets a cookie (or signals).
    OnCookie,
    /// No fresh ID: exempt paths, CORS preflights, `cookie.anonymous: false`.
    Nobody,
}

/// Who gets a pre-login session: never on an exempt path or a CORS preflight (`OPTIONS`
/// with `Access-Control-Request-Method`), then as `cookie.anonymous` says.
#[inline(never)]
pub fn who_mints(cfg: &Config, req: &RequestView<'_>, exempt: bool) -> Mints {
    let preflight = req.method == b"OPTIONS" && req.cors_request_method;
    if exempt || preflight {
        return Mints::Nobody;
    }
    match cfg.cookie.anonymous {
        Anonymous::Always => Mints::Anyone,
        Anonymous::Never => Mints::Nobody,
        Anonymous::Navigate if navigation(req) => Mints::Anyone,
        Anonymous::Navigate => Mints::OnCookie,
    }
}

/// A document navigation: `Sec-Fetch-Mode: navigate`, or, without Fetch metadata, a GET or
/// HEAD whose `Accept` names `text/html`.
pub fn navigation(req: &RequestView<'_>) -> bool {
    if let Some(mode) = req.sec_fetch_mode {
        return mode.trim_ascii().eq_ignore_ascii_case(b"navigate");
    }
    let get = req.method == b"GET" || req.method == b"HEAD";
    let html = req
        .accept
        .is_some_and(|a| a.windows(9).any(|w| w.eq_ignore_ascii_case(b"text/html")));
    get && html
}

/// A request without a valid session gets a fresh ID when `allowed` (see [`who_mints`]);
/// without randomness, none (counted as an internal error). The response decides whether it
/// is committed (`cache.rs`); `session.minted` is counted there.
pub fn mint(
    allowed: bool,
    session: Option<Session>,
    issue: Issue,
    ctx: &Ctx<'_>,
    random_id: RandomId<'_>,
    rec: &mut Record,
) -> (Option<Session>, Issue) {
    if session.is_some() || !allowed {
        return (session, issue);
    }
    let Some(id) = random_id() else {
        rec.count(Counter::InternalError);
        rec.info(format_args!("no randomness: session not minted"));
        return (None, issue);
    };
    let s = app_cookies::fresh_session(SessionId(id), ctx.now, None, ctx.scope, ctx.ua.as_ref());
    rec.debug(|| format!("session drawn session={}", tag(&s.id)));
    (Some(s), Issue::Minted)
}

/// The mesh's upstream headers that the client sent itself: removed, counted.
#[cold]
pub fn strip_spoofed(spoofed: &[&str], rec: &mut Record) -> Vec<String> {
    if spoofed.is_empty() {
        return Vec::new();
    }
    rec.count_n(Counter::SpoofedHeadersRemoved, spoofed.len() as u64);
    rec.info(format_args!(
        "spoofed session headers removed: {}",
        spoofed.join(",")
    ));
    spoofed.iter().map(|s| s.to_string()).collect()
}

/// The session headers upstreams receive: the ID, and the subject of an authenticated one.
pub fn upstream_headers(cfg: &Config, session: Option<&Session>) -> Vec<(String, String)> {
    let mut set = Vec::new();
    if let Some(s) = session {
        set.push((cfg.upstream.session_header.clone(), s.id.encoded()));
        if let Some(sub) = &s.subject {
            set.push((cfg.upstream.subject_header.clone(), sub.clone()));
        }
    }
    set
}

/// The request goes to a cluster allowed to signal: draw the ID a rotation would commit and
/// return the header that tells the auth upstream. Separate from [`decide_request`] because
/// the filter reads the routed cluster (a host call) only after the request's edits, and
/// checks it again on the response (see `trust.rs`).
pub fn grant_signal(
    cfg: &Config,
    pending: &mut Pending,
    rec: &mut Record,
    random_id: RandomId<'_>,
) -> Option<(String, String)> {
    pending.may_signal = true;
    match random_id() {
        Some(id) => {
            let id = SessionId(id);
            pending.next_id = Some(id);
            Some((cfg.upstream.next_session_header.clone(), id.encoded()))
        }
        None => {
            rec.count(Counter::InternalError);
            None
        }
    }
}

pub(super) fn pending(
    session: Option<Session>,
    issue: Issue,
    request_id: String,
    now: u64,
) -> Pending {
    Pending {
        session,
        session_hash: None,
        issue,
        next_id: None,
        may_signal: false,
        request_id,
        now,
        scope: [0; token::TAG_LEN],
        ua: None,
        app_cookies: Vec::new(),
        spare_id: None,
        decision: "none",
        navigation_only: false,
        unproven: false,
        device: None,
        navigation: false,
    }
}

/// A request answered locally (`outcome`: a `Reply`, or an `Answer` sent in every mode).
#[cold]
fn stop(answered: (RequestOutcome, &'static str), now: u64, rec: Record) -> RequestDecision {
    let (outcome, word) = answered;
    let mut pending = pending(None, Issue::None, rec.request_id.clone(), now);
    pending.decision = word;
    RequestDecision {
        outcome,
        pending,
        record: rec,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
#[path = "request_tests.rs"]
mod tests;
