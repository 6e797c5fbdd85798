//! The response phase, as named steps. [`decide_response`] holds their order: the signal is
//! parsed, trusted (or not) before anything rotates, applied; then the upstream's cookies
//! are hardened, the mesh cookie is set and the response made uncacheable.

use super::{
    app_cookies, session_tag, tag, Issue, Pending, Record, ResponseDecision, ResponseEdits,
    ResponseView, SetCookies,
};
use crate::config::Config;
use crate::metrics::Counter;
use crate::set_cookie::{self, Upstream};
use crate::token::{self, Session};

/// Decides a response: honour (or refuse) the auth upstream's signal, issue the mesh
/// cookie, harden the upstream's cookies.
pub fn decide_response(cfg: &Config, p: &Pending, resp: &ResponseView<'_>) -> ResponseDecision {
    let mut rec = Record::new(resp.debug_logs, p.request_id.clone());
    // Signal headers never reach the client, whatever is decided below.
    let remove = signal_headers(cfg, resp);

    // Defense 3: rotation. Trust first: an untrusted cluster's signal changes nothing.
    let signal = trust_signal(parse_signal(&resp.signals), p.may_signal, &mut rec);
    let subject = one_subject(&resp.subjects);
    // A fresh ID is committed, and a re-issue lands, only where the commit rule allows.
    let mut mesh = super::cache::commit(p, resp, &mut rec);
    let signalled = apply_signal(signal, subject, p, resp.now, &mut rec);
    let rotated_or_ended = signalled.is_some();
    if let Some(m) = signalled {
        mesh = m;
    }
    if !p.unproven {
        // An unproven request's session is left alone: nothing of it is re-issued or bound.
        app_cookies::bind_response(cfg, &mut mesh, p, &resp.set_cookies, &mut rec);
    }
    if !rotated_or_ended && super::cache::partial(resp.status) {
        // A cache merges a 304's fields into the stored object: no cookie of ours there.
        mesh = MeshCookie::Keep;
    }
    let decision = decision(p, signal, &mesh);
    let session_hash = left_session_hash(p, &mesh);

    let (list, changed) = harden_upstream_cookies(cfg, p, &resp.set_cookies, &mut rec);
    let offer = super::dbsc::offer(cfg, p, &mesh, rotated_or_ended, resp, &mut rec);
    let ours = mesh_set_cookie(cfg, &mesh, resp.now);
    // The offer's challenge belongs to one session: no shared cache may store it either.
    let personal = ours.is_some() || offer.is_some();
    let cache_control = cache_headers(personal, resp.cache_control.as_deref());
    let no_store = targeted_cache_headers(personal, &resp.targeted_cache);
    let set_cookies = set_cookies(cfg, &mesh, list, changed, ours);
    ResponseDecision {
        edits: ResponseEdits {
            remove,
            set_cookies,
            cache_control,
            no_store,
            add: offer.into_iter().collect(),
        },
        record: rec,
        decision,
        session_hash,
    }
}

/// The hash of the session the response leaves (filter state, logs).
fn left_session_hash(p: &Pending, mesh: &MeshCookie) -> Option<[u8; 8]> {
    match mesh {
        MeshCookie::Set(s) => Some(token::session_hash(&s.id)),
        MeshCookie::Expire => None,
        // An ID never committed is no session.
        MeshCookie::Keep if p.issue == Issue::Minted => None,
        MeshCookie::Keep => p
            .session_hash
            .or_else(|| p.session.as_ref().map(|s| token::session_hash(&s.id))),
    }
}

/// Every `Set-Cookie` of the response: the upstream's (hardened, `changed` when they differ
/// from what it sent), then the mesh cookie's, and on an ended session the expired DBSC ticket.
fn set_cookies(
    cfg: &Config,
    mesh: &MeshCookie,
    mut list: Vec<Vec<u8>>,
    changed: bool,
    ours: Option<String>,
) -> SetCookies {
    let ticket_expired = match mesh {
        MeshCookie::Expire => super::dbsc::expired_ticket(cfg),
        _ => None,
    };
    match (ours, changed, ticket_expired) {
        (None, false, None) => SetCookies::Unchanged,
        (Some(c), false, None) => SetCookies::Append(c),
        (ours, _, ticket) => {
            list.extend(ours.map(String::into_bytes));
            list.extend(ticket.map(String::into_bytes));
            SetCookies::Replace(list)
        }
    }
}

/// The word for `session_guard.decision` once the response is decided.
fn decision(p: &Pending, signal: Signal, mesh: &MeshCookie) -> &'static str {
    match (signal, mesh) {
        (Signal::Login, MeshCookie::Set(_)) => "rotated_login",
        (Signal::Privilege, MeshCookie::Set(_)) => "rotated_privilege",
        (Signal::Logout | Signal::Conflicting, _) | (_, MeshCookie::Expire) => "logout",
        (_, MeshCookie::Set(_)) if p.session.is_none() => "minted",
        (_, MeshCookie::Keep) if p.decision == "minted" => "not_committed",
        (_, MeshCookie::Keep) if p.decision == "reissued" => "valid",
        _ => p.decision,
    }
}

/// The signal header's values, read as one signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    None,
    Login,
    Privilege,
    Logout,
    Unknown,
    /// Values that disagree (e.g. `login` and `logout`).
    Conflicting,
}

/// Parses every value of the signal header (trimmed, ASCII case-insensitive).
pub fn parse_signal(values: &[&[u8]]) -> Signal {
    let Some(first) = values.first().map(|f| f.trim_ascii()) else {
        return Signal::None;
    };
    if values
        .iter()
        .any(|v| !v.trim_ascii().eq_ignore_ascii_case(first))
    {
        return Signal::Conflicting;
    }
    if first.eq_ignore_ascii_case(b"login") {
        Signal::Login
    } else if first.eq_ignore_ascii_case(b"privilege") {
        Signal::Privilege
    } else if first.eq_ignore_ascii_case(b"logout") {
        Signal::Logout
    } else {
        Signal::Unknown
    }
}

/// The subject header's values, read as one subject. Values that disagree are no subject:
/// `Some(b"")`, which the subject check refuses and counts, as it does for disagreeing signals
/// (a login still rotates, unauthenticated).
pub fn one_subject<'a>(values: &[&'a [u8]]) -> Option<&'a [u8]> {
    let (first, rest) = values.split_first()?;
    let first = first.trim_ascii();
    Some(if rest.iter().all(|v| v.trim_ascii() == first) {
        first
    } else {
        b""
    })
}

/// Names of the signal headers present on the response, to remove.
pub fn signal_headers(cfg: &Config, resp: &ResponseView<'_>) -> Vec<String> {
    let mut remove = Vec::new();
    if !resp.signals.is_empty() {
        remove.push(cfg.signal.header.clone());
    }
    if !resp.subjects.is_empty() {
        remove.push(cfg.signal.subject_header.clone());
    }
    remove
}

/// A signal from a cluster not allowed to signal is ignored, counted and logged.
pub fn trust_signal(signal: Signal, may_signal: bool, rec: &mut Record) -> Signal {
    if signal == Signal::None || may_signal {
        return signal;
    }
    rec.count(Counter::SignalUntrusted);
    rec.info(format_args!("signal from an untrusted cluster ignored"));
    Signal::None
}

/// What the response does with the mesh cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshCookie {
    Keep,
    Set(Session),
    Expire,
}

/// Applies a trusted signal; `None`: the mesh cookie stays as the request decided.
pub fn apply_signal(
    signal: Signal,
    subject: Option<&[u8]>,
    p: &Pending,
    now: u64,
    rec: &mut Record,
) -> Option<MeshCookie> {
    match signal {
        Signal::None => None,
        Signal::Conflicting => {
            // `login` and `logout` on one response: fail closed, end the session.
            rec.count(Counter::SignalUnknown);
            rec.info(format_args!("conflicting signals: session ended"));
            Some(MeshCookie::Expire)
        }
        Signal::Login | Signal::Privilege => {
            let login = signal == Signal::Login;
            // An unproven request's session lends nothing to the next one: not its subject.
            let current = p.session.as_ref().filter(|_| !p.unproven);
            let subject = signal_subject(login, subject, current, rec);
            Some(rotate(login, subject, p, now, rec))
        }
        Signal::Logout => {
            rec.count(Counter::Logout);
            rec.debug(|| {
                let s = session_tag(p.session.as_ref());
                format!("session ended on logout session={s}")
            });
            Some(MeshCookie::Expire)
        }
        Signal::Unknown => {
            rec.count(Counter::SignalUnknown);
            rec.info(format_args!("unknown signal ignored"));
            None
        }
    }
}

/// The subject of the rotated session: the signalled one if valid; on `privilege` without
/// one, the current subject. A refused subject is counted (the rotation still happens).
fn signal_subject(
    login: bool,
    given: Option<&[u8]>,
    current: Option<&Session>,
    rec: &mut Record,
) -> Option<String> {
    let new_subject = match given {
        Some(s) if token::valid_subject(s) => Some(String::from_utf8_lossy(s).into_owned()),
        other => {
            // A privilege change without a subject keeps the current one.
            if login || other.is_some() {
                rec.count(Counter::SignalInvalidSubject);
                rec.info(format_args!("signal subject refused"));
            }
            None
        }
    };
    if login {
        new_subject
    } else {
        new_subject.or_else(|| current.and_then(|s| s.subject.clone()))
    }
}

/// Commits the ID forwarded as `x-session-id-next`; without one, ends the session instead.
#[cold]
fn rotate(
    login: bool,
    subject: Option<String>,
    p: &Pending,
    now: u64,
    rec: &mut Record,
) -> MeshCookie {
    let Some(id) = p.next_id else {
        // Never let the pre-login ID become authenticated: end it instead.
        rec.count(Counter::InternalError);
        rec.info(format_args!("rotation impossible, session ended"));
        return MeshCookie::Expire;
    };
    // The new session keeps the scope, records the client and carries the app cookies that
    // were valid on this request (an SSO login does not drop the app's cart).
    let s = app_cookies::new_session(p, id, now, subject);
    let (counter, kind) = if login {
        (Counter::RotationLogin, "login")
    } else {
        (Counter::RotationPrivilege, "privilege")
    };
    rec.count(counter);
    rec.debug(|| {
        let from = session_tag(p.session.as_ref());
        format!("session rotated on {kind} from={from} to={}", tag(&s.id))
    });
    MeshCookie::Set(s)
}

/// The upstream's `Set-Cookie`s: the mesh cookie's name blocked, the others hardened.
/// Returns the list to send and whether it differs from the upstream's.
pub fn harden_upstream_cookies(
    cfg: &Config,
    p: &Pending,
    set_cookies: &[&[u8]],
    rec: &mut Record,
) -> (Vec<Vec<u8>>, bool) {
    let mut changed = false;
    let mut list: Vec<Vec<u8>> = Vec::with_capacity(set_cookies.len() + 1);
    for v in set_cookies {
        if super::proof::withheld(cfg, p, v, rec) {
            changed = true;
            continue;
        }
        let name = cfg.cookie.name.as_bytes();
        match set_cookie::harden(v, name, &cfg.url.params, cfg.cookie.secure) {
            Upstream::Keep => list.push(v.to_vec()),
            Upstream::Block => {
                changed = true;
                rec.count(Counter::UpstreamCookieBlocked);
                rec.info(format_args!(
                    "upstream Set-Cookie for the mesh cookie removed"
                ));
            }
            Upstream::Harden(h) => {
                changed = true;
                rec.count(Counter::UpstreamCookieHardened);
                list.push(h);
            }
        }
    }
    (list, changed)
}

/// The mesh's own `Set-Cookie`, if the response sets or expires it.
pub fn mesh_set_cookie(cfg: &Config, mesh: &MeshCookie, now: u64) -> Option<String> {
    match mesh {
        MeshCookie::Keep => None,
        MeshCookie::Expire => Some(set_cookie::expired_mesh_cookie(&cfg.cookie)),
        MeshCookie::Set(s) => {
            let k = cfg.signing_key()?;
            let v = token::encode(s, &cfg.cookie.name, k)?;
            let max_age = token::remaining_lifetime(s, now, cfg.cookie.max_age_s);
            Some(set_cookie::mesh_cookie(&cfg.cookie, &v, max_age))
        }
    }
}

/// CDNs read targeted fields (RFC 9213 `CDN-Cache-Control`, `Surrogate-Control`, ...)
/// *before* `Cache-Control`: on a response that carries the mesh cookie each one present
/// becomes `no-store`, so no shared cache stores the cookie for the next visitor.
pub fn targeted_cache_headers(sets_mesh_cookie: bool, present: &[(&str, &[u8])]) -> Vec<String> {
    if !sets_mesh_cookie {
        return Vec::new();
    }
    present.iter().map(|(n, _)| n.to_string()).collect()
}

/// A response that sets the mesh cookie is never stored by a shared cache: the new
/// `Cache-Control`, if it must change.
pub fn cache_headers(sets_mesh_cookie: bool, existing: Option<&[u8]>) -> Option<Vec<u8>> {
    if !sets_mesh_cookie {
        return None;
    }
    set_cookie::cache_control_with_cookie(existing)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::token::SessionId;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn cfg() -> Config {
        let json = format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]}}"#);
        parse(json.as_bytes(), &|_| None).unwrap()
    }

    fn pending(next: bool) -> Pending {
        Pending {
            session: Some(Session::new(SessionId([9; 16]), 1, Some("bob".into()))),
            issue: Issue::None,
            next_id: next.then_some(SessionId([7; 16])),
            may_signal: true,
            request_id: "r".into(),
            now: 10,
            ..Default::default()
        }
    }

    #[test]
    fn parse_signal_values() {
        assert_eq!(parse_signal(&[]), Signal::None);
        assert_eq!(parse_signal(&[b" LogIn "]), Signal::Login);
        assert_eq!(
            parse_signal(&[b"privilege", b"Privilege"]),
            Signal::Privilege
        );
        assert_eq!(parse_signal(&[b"logout"]), Signal::Logout);
        assert_eq!(parse_signal(&[b"promote"]), Signal::Unknown);
        assert_eq!(parse_signal(&[b"login", b"logout"]), Signal::Conflicting);
    }

    /// Issue 28: two different subjects on one login are no subject (refused, counted).
    #[test]
    #[allow(clippy::type_complexity)]
    fn disagreeing_subjects_are_no_subject() {
        let cases: [(&[&[u8]], Option<&[u8]>); 5] = [
            (&[], None),
            (&[b" alice "], Some(b"alice")),
            (&[b"alice", b"alice "], Some(b"alice")),
            (&[b"alice", b"mallory"], Some(b"")),
            (&[b"alice", b"alice", b"Alice"], Some(b"")),
        ];
        for (values, want) in cases {
            assert_eq!(one_subject(values), want, "{values:?}");
        }
        let mut r = Record::new(false, "r".into());
        assert_eq!(signal_subject(true, Some(b""), None, &mut r), None);
        assert_eq!(r.counters, vec![(Counter::SignalInvalidSubject, 1)]);
    }

    #[test]
    fn trust_comes_before_any_effect() {
        let mut r = Record::new(false, "r".into());
        assert_eq!(trust_signal(Signal::Login, true, &mut r), Signal::Login);
        assert_eq!(trust_signal(Signal::None, false, &mut r), Signal::None);
        assert!(r.counters.is_empty());
        assert_eq!(
            trust_signal(Signal::Conflicting, false, &mut r),
            Signal::None
        );
        assert_eq!(r.counters, vec![(Counter::SignalUntrusted, 1)]);
    }

    #[test]
    fn apply_rotates_expires_or_keeps() {
        let _ = cfg();
        let mut r = Record::new(false, "r".into());
        let p = pending(true);
        let Some(MeshCookie::Set(s)) = apply_signal(Signal::Privilege, None, &p, 20, &mut r) else {
            unreachable!()
        };
        assert_eq!(
            (s.id, s.subject.as_deref()),
            (SessionId([7; 16]), Some("bob"))
        );
        let login = apply_signal(Signal::Login, None, &p, 20, &mut r);
        assert!(matches!(
            login,
            Some(MeshCookie::Set(Session { subject: None, .. }))
        ));
        let none = apply_signal(Signal::Login, Some(b"a"), &pending(false), 20, &mut r);
        assert_eq!(
            none,
            Some(MeshCookie::Expire),
            "no next id: the session ends"
        );
        assert_eq!(apply_signal(Signal::Unknown, None, &p, 20, &mut r), None);
        assert_eq!(apply_signal(Signal::None, None, &p, 20, &mut r), None);
        let c2 = apply_signal(Signal::Conflicting, None, &p, 20, &mut r);
        assert_eq!(c2, Some(MeshCookie::Expire));
        assert_eq!(
            r.counters.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            [
                Counter::RotationPrivilege,
                Counter::SignalInvalidSubject,
                Counter::RotationLogin,
                Counter::InternalError,
                Counter::SignalUnknown,
                Counter::SignalUnknown
            ]
        );
    }

    #[test]
    fn upstream_cookies_mesh_cookie_and_cache() {
        let c = cfg();
        let mut r = Record::new(false, "r".into());
        let (l, changed) = harden_upstream_cookies(
            &c,
            &Pending::default(),
            &[b"a=1; Secure; SameSite=Lax"],
            &mut r,
        );
        assert_eq!((l.len(), changed), (1, false));
        let (l, changed) =
            harden_upstream_cookies(&c, &Pending::default(), &[b"__Host-session=x"], &mut r);
        assert_eq!((l.len(), changed), (0, true));
        assert_eq!(mesh_set_cookie(&c, &MeshCookie::Keep, 5), None);
        let s = Session::new(SessionId([1; 16]), 5, None);
        let set = mesh_set_cookie(&c, &MeshCookie::Set(s), 5).unwrap();
        assert!(set.starts_with("__Host-session=v2.k1.") && set.ends_with("Max-Age=43200"));
        assert_eq!(cache_headers(false, Some(b"public")), None);
        assert_eq!(
            cache_headers(true, None).as_deref(),
            Some(&b"private, no-store"[..])
        );
    }
}
