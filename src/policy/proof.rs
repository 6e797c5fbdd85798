//! The device key's proof on every request of a bound session (DBSC, docs/dbsc.md): the
//! ticket cookie read once per request, a bound session proven or unproven, an unbound one
//! bound again from its own ticket, and what an unproven request's upstream and response
//! never carry. No host call: the ticket is a cookie the filter already read.

use super::{app_cookies, Ctx, Issue, Pending, Record, RequestDecision, RequestEdits};
use super::{RequestOutcome, RequestView};
use crate::config::Config;
use crate::cookies;
use crate::dbsc::{self, Thumbprint, TICKET_COOKIE};
use crate::metrics::Counter;
use crate::set_cookie;
use crate::token::{self, Session, SessionId};

/// A bound session's request without a valid ticket: forwarded with the URL
/// defense applied, no identity headers (spoofed ones removed), no mesh cookie, ticket or app
/// session cookie; nothing minted or re-issued. The session stays pending so that a login or
/// logout on the response still applies.
#[cold]
pub(super) fn unproven(
    cfg: &Config,
    req: &RequestView<'_>,
    mut edits: RequestEdits,
    session: Option<Session>,
    current: Option<Vec<Vec<u8>>>,
    ctx: &Ctx<'_>,
    mut rec: Record,
) -> RequestDecision {
    let mut none = Issue::None;
    let app = app_cookies::filter_request(
        cfg,
        &req.cookies,
        current,
        None,
        &mut none,
        req.now,
        &mut rec,
    );
    edits.cookies = app.cookies;
    // No identity header is set; any the client sent is removed, as on every request.
    edits.remove = super::strip_spoofed(&req.spoofed, &mut rec);
    let mut p = super::request::pending(session, Issue::None, rec.request_id.clone(), req.now);
    p.unproven = true;
    // A login on this response starts an unbound session of this scope and client.
    (p.scope, p.ua) = (ctx.scope, ctx.ua);
    p.decision = "unproven";
    p.session_hash = p.session.as_ref().map(|s| token::session_hash(&s.id));
    RequestDecision {
        outcome: RequestOutcome::Forward(edits),
        pending: p,
        record: rec,
    }
}

/// What the steady path makes of a request's session (no host call: the ticket is a cookie).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proven {
    /// No DBSC for this request: off, no session, or an unbound session.
    NotBound,
    /// A bound session with a valid ticket for its key.
    Proven,
    /// A bound session without one.
    Unproven,
}

/// The request's DBSC ticket (`__Host-session-bound`), read once per request with DBSC on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ticket {
    #[default]
    Absent,
    /// Forged, expired, of an unknown key, or more than one.
    Invalid,
    /// Its device key's thumbprint and the hash of the session it was issued to.
    Valid(Thumbprint, [u8; 8]),
}

impl Ticket {
    /// Reads the request's ticket; `Absent` with DBSC off (no work at all).
    pub fn of(cfg: &Config, cookies: &[&[u8]], now: u64) -> Ticket {
        if !cfg.dbsc.enabled {
            return Ticket::Absent;
        }
        match cookies::find(cookies, TICKET_COOKIE.as_bytes()) {
            cookies::Found { count: 0, .. } => Ticket::Absent,
            cookies::Found {
                count: 1,
                first: Some(c),
            } => dbsc::open_ticket(c.value, &cfg.keys, now)
                .map_or(Ticket::Invalid, |(t, s)| Ticket::Valid(t, s)),
            _ => Ticket::Invalid,
        }
    }

    /// Whether it was issued to session `id` (that session registered).
    pub fn issued_to(self, id: &SessionId) -> Option<Thumbprint> {
        match self {
            Ticket::Valid(t, s) if s == token::session_hash(id) => Some(t),
            _ => None,
        }
    }
}

/// Whether a bound session's request carries a valid ticket for its key; counted. An
/// authenticated, unbound session whose request carries a valid ticket issued to it is bound
/// again ([`rebind`]).
pub fn prove(
    cfg: &Config,
    s: Option<&mut Session>,
    issue: &mut Issue,
    ticket: Ticket,
    rec: &mut Record,
) -> Proven {
    // With DBSC off (a rollback), a bound session is an ordinary one.
    let Some(s) = s.filter(|_| cfg.dbsc.enabled) else {
        return Proven::NotBound;
    };
    let Some(device) = s.device else {
        return rebind(s, issue, ticket, rec);
    };
    match ticket {
        Ticket::Valid(t, _) if t == device => return Proven::Proven,
        Ticket::Absent => {}
        _ => rec.count(Counter::DbscInvalidTicket),
    }
    rec.count(Counter::DbscUnproven);
    if cfg.dbsc.monitor {
        rec.debug(|| "dbsc: unproven request forwarded (monitor)".to_string());
        return Proven::Proven;
    }
    rec.info(format_args!(
        "dbsc: unproven request: forwarded without identity"
    ));
    Proven::Unproven
}

/// An authenticated session that is not bound, on a request that carries a valid ticket issued
/// to this very session: the browser registered while another response re-issued the unbound
/// cookie over the bound one (Chrome registers beside following the login's redirect, and that
/// page may bind an app cookie). The session is bound to the ticket's key again and re-issued.
/// Only a ticket the mesh issued to this session ID counts (a registration keeps the ID):
/// neither a leftover ticket of another session nor one an upstream tries to set (they are
/// blocked) binds it. A thief gains nothing: whoever holds an unbound session can register
/// it at `/start` anyway.
fn rebind(s: &mut Session, issue: &mut Issue, ticket: Ticket, rec: &mut Record) -> Proven {
    let Some(device) = ticket.issued_to(&s.id).filter(|_| s.subject.is_some()) else {
        return Proven::NotBound;
    };
    s.device = Some(device);
    if *issue == Issue::None {
        *issue = Issue::Reissued;
    }
    rec.count(Counter::DbscRebound);
    rec.info(format_args!(
        "dbsc: unbound session bound again from its ticket"
    ));
    Proven::Proven
}

/// An upstream `Set-Cookie` the browser must not get: the ticket (only the mesh issues it), and,
/// on a response to an unproven request, an app session cookie (the app, seeing no session,
/// starts a new one: its cookie would replace the browser's bound one, and the user would be
/// logged out of the app by a skipped refresh). Counted.
pub fn withheld(cfg: &Config, p: &Pending, v: &[u8], rec: &mut Record) -> bool {
    if !cfg.dbsc.enabled {
        return false;
    }
    let name = set_cookie::cookie_name(v);
    if name.eq_ignore_ascii_case(TICKET_COOKIE.as_bytes()) {
        rec.count(Counter::UpstreamCookieBlocked);
        rec.info(format_args!(
            "upstream Set-Cookie for the DBSC ticket removed"
        ));
        return true;
    }
    let app = p.unproven
        && set_cookie::parse_app_cookie(v, p.now)
            .is_some_and(|(n, _, _)| crate::config::cookie_names::name_listed(cfg, n));
    if app {
        rec.count(Counter::DbscAppCookieWithheld);
    }
    app
}

/// The session's ID is not in the ticket: a rotation keeps the device of a proven request.
pub fn device_kept(s: Option<&Session>, proven: Proven) -> Option<Thumbprint> {
    (proven == Proven::Proven)
        .then(|| s.and_then(|s| s.device))
        .flatten()
}
