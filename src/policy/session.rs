//! The mesh cookie's validator: from the cookies found on a request to one outcome. Pure,
//! so every reason a cookie is refused is tested without a request around it.

use super::{invalid_counter, tag, value_tag, Issue, Record};
use crate::config::Config;
use crate::cookies::Found;
use crate::metrics::Counter;
use crate::token::{self, Invalid, Session};

/// What the request's mesh cookie is worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieCheck<'a> {
    /// No mesh cookie.
    Absent,
    /// A valid session; `reissue`: its cookie must be set again (sliding idle timeout),
    /// `last_used` already advanced.
    Valid { session: Session, reissue: bool },
    /// One mesh cookie that fails a check; `value` only for its keyed hash in the log.
    Invalid { reason: Invalid, value: &'a [u8] },
    /// Two or more mesh cookies (cookie tossing): none is used.
    Duplicate(usize),
}

/// Validates the mesh cookie: the signature (with the key ring and the cookie's name), then
/// its age. Further checks on a verified session (scope, revocation, client fingerprint)
/// go after the signature, as further `Invalid` outcomes.
pub fn verify_mesh_cookie<'a>(cfg: &Config, found: &Found<'a>, now: u64) -> CookieCheck<'a> {
    let c = match (found.count, &found.first) {
        (0, _) | (_, None) => return CookieCheck::Absent,
        (1, Some(c)) => c,
        (n, Some(_)) => return CookieCheck::Duplicate(n),
    };
    let verified = token::decode(c.value, c.name, &cfg.keys).and_then(|s| {
        token::check_age(&s, now, cfg.cookie.max_age_s, cfg.cookie.idle_timeout_s).map(|()| s)
    });
    match verified {
        Ok(mut session) => {
            let reissue = token::needs_reissue(&session, now, cfg.cookie.idle_timeout_s);
            if reissue {
                session.last_used = now;
            }
            CookieCheck::Valid { session, reissue }
        }
        Err(reason) => CookieCheck::Invalid {
            reason,
            value: c.value,
        },
    }
}

/// Counts and logs the outcome; the session the request continues with, if any.
pub fn adopt_session(
    cfg: &Config,
    check: CookieCheck<'_>,
    rec: &mut Record,
) -> (Option<Session>, Issue) {
    match check {
        CookieCheck::Absent => (None, Issue::None),
        CookieCheck::Valid { session, reissue } => {
            rec.count(Counter::SessionValid);
            if !reissue {
                return (Some(session), Issue::None);
            }
            rec.count(Counter::SessionReissued);
            rec.debug(|| format!("session re-issued session={}", tag(cfg, &session.id)));
            (Some(session), Issue::Reissued)
        }
        CookieCheck::Invalid { reason, value } => {
            rec.count(invalid_counter(reason));
            // Expiry is ordinary; anything else may be an attack and is logged at info.
            let level = if matches!(reason, Invalid::ExpiredAbsolute | Invalid::ExpiredIdle) {
                super::Level::Debug
            } else {
                super::Level::Info
            };
            rec.log(
                level,
                format_args!(
                    "session cookie invalid: {} cookie={}",
                    reason.as_str(),
                    value_tag(cfg, value)
                ),
            );
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::cookies;
    use crate::token::SessionId;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const NOW: u64 = 1_800_000_000;

    fn cfg() -> Config {
        let json = format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]}}"#);
        parse(json.as_bytes(), &|_| None).unwrap()
    }

    fn check<'a>(c: &Config, headers: &[&'a [u8]]) -> CookieCheck<'a> {
        verify_mesh_cookie(c, &cookies::find(headers, b"__Host-session"), NOW)
    }

    fn cookie(c: &Config, s: &Session) -> String {
        let v = token::encode(s, "__Host-session", &c.keys[0]).unwrap();
        format!("__Host-session={v}")
    }

    #[test]
    fn outcomes() {
        let c = cfg();
        assert_eq!(check(&c, &[b"a=1"]), CookieCheck::Absent);
        let fresh = Session::new(SessionId([3; 16]), NOW - 1, None);
        let good = cookie(&c, &fresh);
        assert_eq!(
            check(&c, &[good.as_bytes()]),
            CookieCheck::Valid {
                session: fresh,
                reissue: false
            }
        );
        let two = format!("{good}; {good}");
        assert_eq!(check(&c, &[two.as_bytes()]), CookieCheck::Duplicate(2));
        assert_eq!(
            check(&c, &[b"__Host-session=junk"]),
            CookieCheck::Invalid {
                reason: Invalid::Malformed,
                value: b"junk"
            }
        );
        let old = Session::new(SessionId([3; 16]), NOW - 43_201, None);
        let old = cookie(&c, &old);
        assert!(matches!(
            check(&c, &[old.as_bytes()]),
            CookieCheck::Invalid {
                reason: Invalid::ExpiredAbsolute | Invalid::ExpiredIdle,
                ..
            }
        ));
    }

    #[test]
    fn reissue_advances_last_use_and_is_recorded() {
        let c = cfg();
        let used = Session::new(SessionId([3; 16]), NOW - 600, None);
        let hdr = cookie(&c, &used);
        let CookieCheck::Valid { session, reissue } = check(&c, &[hdr.as_bytes()]) else {
            unreachable!()
        };
        assert!(reissue);
        assert_eq!((session.issued_at, session.last_used), (NOW - 600, NOW));
        let mut rec = Record::new(true, "r".into());
        let check = CookieCheck::Valid { session, reissue };
        let (s, issue) = adopt_session(&c, check, &mut rec);
        assert_eq!((s.is_some(), issue), (true, Issue::Reissued));
        assert_eq!(
            rec.counters,
            vec![(Counter::SessionValid, 1), (Counter::SessionReissued, 1)]
        );
        assert!(rec.logs[0].1.starts_with("session re-issued session="));
    }

    #[test]
    fn refusals_are_counted_and_logged_without_the_value() {
        let c = cfg();
        let mut rec = Record::new(false, "r".into());
        let check = CookieCheck::Invalid {
            reason: Invalid::Forged,
            value: b"secret-value",
        };
        assert_eq!(adopt_session(&c, check, &mut rec), (None, Issue::None));
        assert_eq!(rec.counters, vec![(Counter::InvalidForged, 1)]);
        let (level, line) = &rec.logs[0];
        assert_eq!(*level, super::super::Level::Info);
        assert!(line.starts_with("session cookie invalid: forged cookie="));
        assert!(line.ends_with(" request_id=r") && !line.contains("secret-value"));
    }
}
