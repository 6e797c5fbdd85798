//! The mesh cookie's validator: from the cookies found on a request to one outcome. Pure,
//! so every reason a cookie is refused is tested without a request around it.
//!
//! The order is the security order: signature (with the key ring and the cookie's name),
//! age, scope, revocation, then the client fingerprint. Each later check runs only on a
//! value the earlier ones accepted.

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
            CookieCheck::Valid { reissue: true, .. } => "reissued",
            CookieCheck::Valid {
                client_changed: true,
                ..
            } => "client_changed",
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

/// `revoke.not_before`, `revoke.subjects` (by the time the current ID was issued) and
/// `revoke.sessions` (by the session's hash).
fn check_revoked(cfg: &Config, s: &Session) -> Result<(), Invalid> {
    let before = |t: Option<u64>| t.is_some_and(|t| s.issued_at < t);
    let subject = s
        .subject
        .as_deref()
        .and_then(|sub| cfg.subject_revoked_before(sub));
    if before(cfg.revoke.not_before)
        || before(subject)
        || cfg.revoked_session(&token::session_hash(&s.id))
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
            rec.count(Counter::SessionReissued);
            rec.debug(|| format!("session re-issued session={}", tag(&session.id)));
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
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::cookies;
    use crate::token::SessionId;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const NOW: u64 = 1_800_000_000;
    const HOST: &[u8] = b"tenant-a.example.com";

    fn cfg_with(extra: &str) -> Config {
        let json = format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]{extra}}}"#);
        parse(json.as_bytes(), &|_| None).unwrap()
    }

    fn cfg() -> Config {
        cfg_with("")
    }

    fn ctx(c: &Config, host: &'static [u8], ua: &[u8]) -> Ctx<'static> {
        Ctx {
            now: NOW,
            scope: super::super::request_scope(c, Some(host)),
            host,
            ua: (c.detect.client_change != ClientChange::Off).then(|| token::ua_digest(ua)),
        }
    }

    fn check_at<'a>(c: &Config, headers: &[&'a [u8]], x: &Ctx<'_>) -> CookieCheck<'a> {
        verify_mesh_cookie(c, &cookies::find(headers, b"__Host-session"), x)
    }

    fn check<'a>(c: &Config, headers: &[&'a [u8]]) -> CookieCheck<'a> {
        check_at(c, headers, &ctx(c, HOST, b"UA"))
    }

    /// A session minted on HOST by a client with User-Agent "UA".
    fn minted(c: &Config, issued: u64, subject: Option<&str>) -> Session {
        let mut s = Session::new(SessionId([3; 16]), issued, subject.map(String::from));
        s.scope = super::super::request_scope(c, Some(HOST));
        s.client = s.id.client_fingerprint(&token::ua_digest(b"UA"));
        s
    }

    fn cookie(c: &Config, s: &Session) -> String {
        let v = token::encode(s, "__Host-session", &c.keys[0]).unwrap();
        format!("__Host-session={v}")
    }

    fn reason(check: CookieCheck<'_>) -> Option<Invalid> {
        match check {
            CookieCheck::Invalid { reason, .. } => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn outcomes() {
        let c = cfg();
        assert_eq!(check(&c, &[b"a=1"]), CookieCheck::Absent);
        let fresh = minted(&c, NOW - 1, None);
        let good = cookie(&c, &fresh);
        assert_eq!(
            check(&c, &[good.as_bytes()]),
            CookieCheck::Valid {
                session: fresh,
                reissue: false,
                client_changed: false
            }
        );
        let two = format!("{good}; {good}");
        assert_eq!(check(&c, &[two.as_bytes()]), CookieCheck::Duplicate(2));
        assert_eq!(
            check(&c, &[b"__Host-session=junk"]),
            CookieCheck::Invalid {
                reason: Invalid::Malformed,
                value: b"junk",
                session: None
            }
        );
        let old = cookie(&c, &minted(&c, NOW - 43_201, None));
        assert!(matches!(
            reason(check(&c, &[old.as_bytes()])),
            Some(Invalid::ExpiredAbsolute | Invalid::ExpiredIdle)
        ));
    }

    #[test]
    fn a_session_belongs_to_its_scope() {
        let c = cfg();
        let v = cookie(&c, &minted(&c, NOW - 1, Some("alice")));
        let valid = |host: &'static [u8]| {
            matches!(
                check_at(&c, &[v.as_bytes()], &ctx(&c, host, b"UA")),
                CookieCheck::Valid { .. }
            )
        };
        assert!(valid(b"tenant-a.example.com"));
        assert!(valid(b"Tenant-A.Example.com:8443"));
        assert!(valid(b"tenant-a.example.com."));
        assert!(!valid(b"tenant-b.example.com"));
        let other = check_at(
            &c,
            &[v.as_bytes()],
            &ctx(&c, b"tenant-b.example.com", b"UA"),
        );
        assert_eq!(reason(other), Some(Invalid::WrongScope));
        // A fixed scope shared by two hosts; none at all.
        let fixed = cfg_with(r#","cookie":{"scope":"tenant-a"}"#);
        let mut s = minted(&fixed, NOW - 1, None);
        s.scope = token::scope_digest(b"tenant-a");
        let v = cookie(&fixed, &s);
        for host in [&b"a.example"[..], b"b.example"] {
            let x = Ctx {
                host,
                ..ctx(&fixed, b"x", b"UA")
            };
            assert!(matches!(
                check_at(&fixed, &[v.as_bytes()], &x),
                CookieCheck::Valid { .. }
            ));
        }
        let none = cfg_with(r#","cookie":{"scope":""}"#);
        assert_eq!(
            reason(check_at(
                &none,
                &[v.as_bytes()],
                &ctx(&none, b"a.example", b"UA")
            )),
            Some(Invalid::WrongScope),
            "minted for tenant-a, not for no scope"
        );
    }

    #[test]
    fn revocation_by_time_subject_and_hash() {
        let s = minted(&cfg(), NOW - 100, Some("alice"));
        let hash = token::hex16(&token::session_hash(&s.id));
        let cases = [
            (format!(r#","revoke":{{"not_before":{}}}"#, NOW - 50), true),
            (
                format!(r#","revoke":{{"not_before":{}}}"#, NOW - 100),
                false,
            ),
            (
                format!(r#","revoke":{{"subjects":{{"alice":{}}}}}"#, NOW),
                true,
            ),
            (
                format!(r#","revoke":{{"subjects":{{"bob":{}}}}}"#, NOW),
                false,
            ),
            (format!(r#","revoke":{{"sessions":["{hash}"]}}"#), true),
            (
                format!(r#","revoke":{{"sessions":["{}"]}}"#, hash.to_uppercase()),
                true,
            ),
            (
                r#","revoke":{"sessions":["0000000000000000"]}"#.to_string(),
                false,
            ),
        ];
        for (extra, revoked) in cases {
            let c = cfg_with(&extra);
            let v = cookie(&c, &s);
            let got = check(&c, &[v.as_bytes()]);
            assert_eq!(
                reason(got.clone()) == Some(Invalid::Revoked),
                revoked,
                "{extra}"
            );
            if revoked {
                let CookieCheck::Invalid { session, .. } = got else {
                    unreachable!()
                };
                assert_eq!(
                    session,
                    Some(token::session_hash(&s.id)),
                    "logged by its hash"
                );
            }
        }
    }

    #[test]
    fn client_change_counted_ended_or_ignored() {
        let count = cfg();
        let s = minted(&count, NOW - 1, None);
        let v = cookie(&count, &s);
        let other = ctx(&count, HOST, b"curl/8");
        assert!(matches!(
            check_at(&count, &[v.as_bytes()], &other),
            CookieCheck::Valid {
                client_changed: true,
                reissue: false,
                ..
            }
        ));
        let end = cfg_with(r#","detect":{"client_change":"end"}"#);
        let got = check_at(&end, &[v.as_bytes()], &ctx(&end, HOST, b"curl/8"));
        assert_eq!(reason(got), Some(Invalid::ClientChanged));
        let off = cfg_with(r#","detect":{"client_change":"off"}"#);
        let got = check_at(&off, &[v.as_bytes()], &ctx(&off, HOST, b"curl/8"));
        assert!(matches!(
            got,
            CookieCheck::Valid {
                client_changed: false,
                ..
            }
        ));
        // A session without a recorded client gets one (and its cookie re-issued).
        let mut bare = s.clone();
        bare.client = [0; token::CLIENT_LEN];
        let v = cookie(&count, &bare);
        let CookieCheck::Valid {
            session,
            reissue,
            client_changed,
        } = check(&count, &[v.as_bytes()])
        else {
            unreachable!()
        };
        assert!(reissue && !client_changed);
        assert_eq!(session.client, s.client);
    }

    #[test]
    fn version_1_cookies_only_on_legacy_hosts() {
        let c = cfg_with(r#","cookie":{"legacy_hosts":["Tenant-A.example.com"]}"#);
        // A 0.1.0 value, as token::decode reads it: legacy, no scope.
        let mut legacy = minted(&c, NOW - 1, Some("alice"));
        legacy.legacy = true;
        let check_legacy = |host: &'static [u8]| {
            let mut s = legacy.clone();
            let x = ctx(&c, host, b"UA");
            (check_scope(&c, &mut s, &x), s)
        };
        let (ok, upgraded) = check_legacy(HOST);
        assert_eq!(ok, Ok(true), "accepted and re-issued");
        assert!(!upgraded.legacy);
        assert_eq!(upgraded.scope, super::super::request_scope(&c, Some(HOST)));
        assert_eq!(
            check_legacy(b"tenant-b.example.com").0,
            Err(Invalid::WrongScope)
        );
        let strict = cfg();
        let mut s = legacy.clone();
        assert_eq!(
            check_scope(&strict, &mut s, &ctx(&strict, HOST, b"UA")),
            Err(Invalid::WrongScope)
        );
    }

    #[test]
    fn reissue_advances_last_use_and_is_recorded() {
        let c = cfg();
        let hdr = cookie(&c, &minted(&c, NOW - 600, None));
        let CookieCheck::Valid {
            session,
            reissue,
            client_changed,
        } = check(&c, &[hdr.as_bytes()])
        else {
            unreachable!()
        };
        assert!(reissue);
        assert_eq!((session.issued_at, session.last_used), (NOW - 600, NOW));
        let mut rec = Record::new(true, "r".into());
        let check = CookieCheck::Valid {
            session,
            reissue,
            client_changed,
        };
        let (s, issue) = adopt_session(check, &mut rec);
        assert_eq!((s.is_some(), issue), (true, Issue::Reissued));
        assert_eq!(
            rec.counters,
            vec![(Counter::SessionValid, 1), (Counter::SessionReissued, 1)]
        );
        assert!(rec.logs[0].1.starts_with("session re-issued session="));
    }

    #[test]
    fn refusals_are_counted_and_logged_without_the_value() {
        let mut rec = Record::new(false, "r".into());
        let check = CookieCheck::Invalid {
            reason: Invalid::Forged,
            value: b"secret-value",
            session: None,
        };
        assert_eq!(adopt_session(check, &mut rec), (None, Issue::None));
        assert_eq!(rec.counters, vec![(Counter::InvalidForged, 1)]);
        let (level, line) = &rec.logs[0];
        assert_eq!(*level, super::super::Level::Info);
        assert!(line.starts_with("session cookie invalid: forged cookie="));
        assert!(line.ends_with(" request_id=r") && !line.contains("secret-value"));
        let revoked = CookieCheck::Invalid {
            reason: Invalid::Revoked,
            value: b"v",
            session: Some([0xab; 8]),
        };
        adopt_session(revoked, &mut rec);
        assert_eq!(rec.counters[1], (Counter::InvalidRevoked, 1));
        assert!(rec.logs[1]
            .1
            .starts_with("session cookie invalid: revoked session=abababababababab"));
    }
}
