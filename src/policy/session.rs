//! The mesh cookie's validator: from the cookies found on a request to one outcome. Pure,
//! so every reason a cookie is refused is tested without a request around it.
//!
//! The order is the security order: signature (with the key ring and the cookie's name),
//! age, scope, revocation, then the client fingerprint. Each later check runs only on a
//! value the earlier ones accepted.

use super::proof::Ticket;
use super::{invalid_counter, tag, value_tag, Issue, Record};
use crate::config::{ClientChange, Config};
use crate::cookies::Found;
use crate::metrics::Counter;
use crate::token::{self, Invalid, Session, TAG_LEN};

/// What the validator needs to know about the request.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub now: u64,
    /// The request's scope digest ([`super::request_scope`]).
    pub scope: [u8; TAG_LEN],
    /// The request's host as `cookie.scope: "host"` reads it (for `cookie.legacy_hosts`).
    pub host: &'a [u8],
    /// SHA-256 of the `User-Agent`; `None` when `detect.client_change` is off.
    pub ua: Option<[u8; 32]>,
    /// The request's DBSC ticket (`Absent` with DBSC off): read once, for the bound session's
    /// proof, `dbsc.require_bound_after_s` and the Cookie header upstreams get.
    pub ticket: Ticket,
}

/// What the request's mesh cookie is worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieCheck<'a> {
    /// No mesh cookie.
    Absent,
    /// A valid session; `reissue`: its cookie must be set again (sliding idle timeout, or
    /// an upgrade of its format), `last_used` already advanced. `client_changed`: presented
    /// by another client than the one recorded (counted; `detect.client_change: count`).
    Valid {
        session: Session,
        reissue: bool,
        client_changed: bool,
    },
    /// One mesh cookie that fails a check; `value` only for its hash in the log, `session`
    /// the session's hash when the value was authentic (scope, revocation, client).
    Invalid {
        reason: Invalid,
        value: &'a [u8],
        session: Option<[u8; 8]>,
    },
    /// Two or more mesh cookies (cookie tossing): none is used.
    Duplicate(usize),
}

impl CookieCheck<'_> {
    /// The word for `session_guard.decision`.
    pub fn decision(&self) -> &'static str {
        match self {
            CookieCheck::Absent => "none",
            CookieCheck::Valid {
                client_changed: true,
                ..
            } => "client_changed",
            CookieCheck::Valid { reissue: true, .. } => "reissued",
            CookieCheck::Valid { .. } => "valid",
            CookieCheck::Invalid { reason, .. } => reason.as_str(),
            CookieCheck::Duplicate(_) => "duplicate",
        }
    }
}

/// Validates the mesh cookie, in the security order (see the module comment).
pub fn verify_mesh_cookie<'a>(cfg: &Config, found: &Found<'a>, ctx: &Ctx<'_>) -> CookieCheck<'a> {
    let c = match (found.count, &found.first) {
        (0, _) | (_, None) => return CookieCheck::Absent,
        (1, Some(c)) => c,
        (n, Some(_)) => return CookieCheck::Duplicate(n),
    };
    let verified = token::decode(c.value, c.name, &cfg.keys).and_then(|s| {
        token::check_age(&s, ctx.now, cfg.cookie.max_age_s, cfg.cookie.idle_timeout_s).map(|()| s)
    });
    let mut session = match verified {
        Ok(s) => s,
        Err(reason) => {
            return CookieCheck::Invalid {
                reason,
                value: c.value,
                session: None,
            }
        }
    };
    match bound_checks(cfg, &mut session, ctx) {
        Ok((upgrade, client_changed)) => {
            let reissue =
                upgrade || token::needs_reissue(&session, ctx.now, cfg.cookie.idle_timeout_s);
            if reissue {
                session.last_used = ctx.now;
            }
            CookieCheck::Valid {
                session,
                reissue,
                client_changed,
            }
        }
        Err(reason) => CookieCheck::Invalid {
            reason,
            value: c.value,
            session: Some(token::session_hash(&session.id)),
        },
    }
}

/// The checks on an authentic, unexpired session: scope, revocation, client. `Ok((upgrade,
/// client_changed))`; `upgrade`: the cookie must be re-issued in the current format.
fn bound_checks(cfg: &Config, s: &mut Session, ctx: &Ctx<'_>) -> Result<(bool, bool), Invalid> {
    let upgrade = check_scope(cfg, s, ctx)?;
    check_revoked(cfg, s)?;
    check_unbound(cfg, s, ctx)?;
    let (recorded, changed) = check_client(cfg, s, ctx.ua)?;
    Ok((upgrade || recorded, changed))
}

/// A session minted for another scope is invalid. A 0.1.0 value (no scope) is accepted
/// only on `cookie.legacy_hosts`, and is then re-issued scoped to this request.
fn check_scope(cfg: &Config, s: &mut Session, ctx: &Ctx<'_>) -> Result<bool, Invalid> {
    if s.legacy {
        if !cfg.legacy_hosts.iter().any(|h| h.as_bytes() == ctx.host) {
            return Err(Invalid::WrongScope);
        }
        s.legacy = false;
        s.scope = ctx.scope;
        return Ok(true);
    }
    if s.scope != ctx.scope {
        return Err(Invalid::WrongScope);
    }
    Ok(false)
}

/// `dbsc.require_bound_after_s`: an authenticated session that its browser did not bind to a
/// device key within that time after its login (when its ID was issued) is invalid.
/// A session whose request carries a ticket issued to it registered: it is bound again on this
/// request (`dbsc::rebind`), whatever its age.
fn check_unbound(cfg: &Config, s: &Session, ctx: &Ctx<'_>) -> Result<(), Invalid> {
    let Some(limit) = cfg.dbsc.require_bound_after_s.filter(|_| cfg.dbsc.enabled) else {
        return Ok(());
    };
    let late = ctx.now.saturating_sub(s.issued_at) > limit;
    if s.subject.is_some() && s.device.is_none() && late {
        if ctx.ticket.issued_to(&s.id).is_some() {
            return Ok(());
        }
        return Err(Invalid::Unbound);
    }
    Ok(())
}

/// `revoke.not_before`, `revoke.subjects` (by the time the current ID was issued) and
/// `revoke.sessions` (by the session's hash, computed only when that list is not empty).
fn check_revoked(cfg: &Config, s: &Session) -> Result<(), Invalid> {
    let before = |t: Option<u64>| t.is_some_and(|t| s.issued_at < t);
    let subject = s
        .subject
        .as_deref()
        .and_then(|sub| cfg.subject_revoked_before(sub));
    if before(cfg.revoke.not_before)
        || before(subject)
        || (cfg.revokes_sessions() && cfg.revoked_session(&token::session_hash(&s.id)))
    {
        return Err(Invalid::Revoked);
    }
    Ok(())
}

/// `Ok((recorded, changed))`: `recorded` when the session had no fingerprint yet (one is
/// recorded, the cookie re-issued); `changed` when it differs (`count`). `end` refuses it.
fn check_client(
    cfg: &Config,
    s: &mut Session,
    ua: Option<[u8; 32]>,
) -> Result<(bool, bool), Invalid> {
    let Some(ua) = ua else {
        return Ok((false, false));
    };
    let fp = s.id.client_fingerprint(&ua);
    if s.client == [0; token::CLIENT_LEN] {
        s.client = fp;
        return Ok((true, false));
    }
    if s.client == fp {
        return Ok((false, false));
    }
    match cfg.detect.client_change {
        ClientChange::End => Err(Invalid::ClientChanged),
        ClientChange::Count | ClientChange::Off => Ok((false, true)),
    }
}

/// Counts and logs the outcome; the session the request continues with, if any.
pub fn adopt_session(check: CookieCheck<'_>, rec: &mut Record) -> (Option<Session>, Issue) {
    match check {
        CookieCheck::Absent => (None, Issue::None),
        CookieCheck::Valid {
            session,
            reissue,
            client_changed,
        } => {
            rec.count(Counter::SessionValid);
            if client_changed {
                rec.count(Counter::ClientChanged);
                rec.info(format_args!(
                    "session client changed session={}",
                    tag(&session.id)
                ));
            }
            if !reissue {
                return (Some(session), Issue::None);
            }
            // Counted when a response carries it (cache.rs): it may wait for another one.
            rec.debug(|| format!("session re-issue due session={}", tag(&session.id)));
            (Some(session), Issue::Reissued)
        }
        CookieCheck::Invalid {
            reason,
            value,
            session,
        } => {
            refused(reason, value, session, rec);
            (None, Issue::None)
        }
        CookieCheck::Duplicate(n) => {
            rec.count(Counter::InvalidDuplicate);
            rec.info(format_args!(
                "session cookie invalid: duplicate ({n} mesh cookies, possible cookie tossing)"
            ));
            (None, Issue::None)
        }
    }
}

#[cold]
fn refused(reason: Invalid, value: &[u8], session: Option<[u8; 8]>, rec: &mut Record) {
    rec.count(invalid_counter(reason));
    // Expiry is ordinary; anything else may be an attack and is logged at info.
    let level = if matches!(reason, Invalid::ExpiredAbsolute | Invalid::ExpiredIdle) {
        super::Level::Debug
    } else {
        super::Level::Info
    };
    let why = reason.as_str();
    match session {
        Some(h) => rec.log(
            level,
            format_args!("session cookie invalid: {why} session={}", token::hex16(&h)),
        ),
        None => rec.log(
            level,
            format_args!("session cookie invalid: {why} cookie={}", value_tag(value)),
        ),
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
