//! Decisions, from a snapshot of headers to a list of edits. No host calls here: the
//! `filter` module reads headers once, asks this module, and writes the edits.

use crate::config::{Config, UrlAction};
use crate::cookies::{self, Rewrite};
use crate::metrics::Counter;
use crate::set_cookie::{self, Upstream};
use crate::token::{self, Invalid, Session, SessionId};
use crate::url;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Debug,
}

/// What a request looks like to the filter: borrowed header values, read once.
#[derive(Debug, Default)]
pub struct RequestView<'a> {
    /// Build debug log lines (see [`Record::debug`]).
    pub debug_logs: bool,
    pub method: &'a [u8],
    pub path: Option<&'a [u8]>,
    pub referer: Option<&'a [u8]>,
    pub cookies: Vec<&'a [u8]>,
    /// Names of the mesh's upstream headers that the client sent itself.
    pub spoofed: Vec<&'a str>,
    /// Envoy's `x-request-id`, for log lines.
    pub request_id: Option<&'a [u8]>,
    pub now: u64,
}

/// A local response instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: &'static [u8],
}

/// Header edits on a forwarded request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequestEdits {
    pub path: Option<Vec<u8>>,
    pub referer: Option<Vec<u8>>,
    /// `Some(list)`: the Cookie headers become exactly `list` (empty: no Cookie header).
    pub cookies: Option<Vec<Vec<u8>>>,
    pub remove: Vec<String>,
    pub set: Vec<(String, String)>,
}

/// Why the response must carry the mesh cookie, decided on the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issue {
    None,
    Minted,
    Reissued,
}

/// What the response phase needs to know about the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub session: Option<Session>,
    pub issue: Issue,
    pub next_id: Option<SessionId>,
    pub may_signal: bool,
    pub request_id: String,
    /// The request's clock reading, reused for the response (one host call less).
    pub now: u64,
}

#[derive(Debug, Default)]
pub struct Record {
    pub counters: Vec<(Counter, u64)>,
    pub logs: Vec<(Level, String)>,
    /// Whether debug lines are wanted: building them (keyed hashes, formatting) costs
    /// microseconds per request, so they are skipped unless Envoy would print them.
    pub debug: bool,
}

impl Record {
    fn count(&mut self, c: Counter) {
        self.count_n(c, 1);
    }
    fn count_n(&mut self, c: Counter, n: u64) {
        if n > 0 {
            self.counters.push((c, n));
        }
    }
    fn log(&mut self, level: Level, msg: String) {
        self.logs.push((level, msg));
    }
    fn debug(&mut self, msg: impl FnOnce() -> String) {
        if self.debug {
            self.logs.push((Level::Debug, msg()));
        }
    }
}

#[derive(Debug)]
pub enum RequestOutcome {
    Reply(LocalReply),
    Forward(RequestEdits),
}

#[derive(Debug)]
pub struct RequestDecision {
    pub outcome: RequestOutcome,
    pub pending: Pending,
    pub record: Record,
}

fn printable(v: Option<&[u8]>) -> String {
    match v {
        Some(v) if !v.is_empty() && v.len() <= 128 && v.iter().all(|b| b.is_ascii_graphic()) => {
            String::from_utf8_lossy(v).into_owned()
        }
        _ => "-".to_string(),
    }
}

fn value_tag(cfg: &Config, v: &[u8]) -> String {
    cfg.signing_key()
        .map_or_else(|| "-".to_string(), |k| token::log_tag_bytes(k, v))
}

fn tag(cfg: &Config, id: &SessionId) -> String {
    cfg.signing_key()
        .map_or_else(|| "-".to_string(), |k| token::log_tag(k, id))
}

/// Decides a request. `random_id` draws 16 bytes from the VM's CSPRNG.
pub fn decide_request(
    cfg: &Config,
    req: &RequestView<'_>,
    random_id: &mut dyn FnMut() -> Option<[u8; token::ID_LEN]>,
) -> RequestDecision {
    let mut rec = Record {
        debug: req.debug_logs,
        ..Record::default()
    };
    let rid = printable(req.request_id);
    let mut edits = RequestEdits::default();

    // Defense 1: the URL.
    if let Some(s) = req.path.and_then(|p| url::strip_path(p, &cfg.url.params)) {
        rec.count_n(Counter::UrlParamsRemoved, s.removed as u64);
        let is_get = req.method == b"GET" || req.method == b"HEAD";
        match cfg.url.action {
            UrlAction::Reject => {
                rec.count(Counter::UrlRejected);
                rec.log(
                    Level::Info,
                    format!(
                        "url rejected: {} session parameter(s) in the URL request_id={rid}",
                        s.removed
                    ),
                );
                return reply(
                    LocalReply {
                        status: 400,
                        headers: vec![
                            ("content-type", "text/plain; charset=utf-8".into()),
                            ("cache-control", "no-store".into()),
                        ],
                        body: b"session identifiers are not accepted in URLs\n",
                    },
                    req,
                    rec,
                    rid,
                );
            }
            UrlAction::Redirect if is_get => {
                rec.count(Counter::UrlRedirected);
                rec.log(
                    Level::Info,
                    format!(
                        "url redirected: {} session parameter(s) removed request_id={rid}",
                        s.removed
                    ),
                );
                return reply(
                    LocalReply {
                        status: 302,
                        headers: vec![
                            ("location", url::location_value(&s.value)),
                            ("cache-control", "no-store".into()),
                        ],
                        body: b"",
                    },
                    req,
                    rec,
                    rid,
                );
            }
            _ => {
                rec.count(Counter::UrlStripped);
                rec.log(
                    Level::Info,
                    format!(
                        "url stripped: {} session parameter(s) removed request_id={rid}",
                        s.removed
                    ),
                );
                edits.path = Some(s.value);
            }
        }
    }
    if let Some(s) = req
        .referer
        .and_then(|r| url::strip_referer(r, &cfg.url.params))
    {
        rec.count(Counter::RefererScrubbed);
        rec.debug(|| format!("referer scrubbed request_id={rid}"));
        edits.referer = Some(s.value);
    }

    // Defense 2: the mesh cookie.
    let name = cfg.cookie.name.as_bytes();
    let found = cookies::find(&req.cookies, name);
    let mut session: Option<Session> = None;
    let mut issue = Issue::None;
    match (found.count, found.first) {
        (0, _) | (_, None) => {}
        (1, Some(c)) => {
            let verified = token::decode(c.value, c.name, &cfg.keys).and_then(|s| {
                token::check_age(&s, req.now, cfg.cookie.max_age_s, cfg.cookie.idle_timeout_s)
                    .map(|()| s)
            });
            match verified {
                Ok(mut s) => {
                    rec.count(Counter::SessionValid);
                    if token::needs_reissue(&s, req.now, cfg.cookie.idle_timeout_s) {
                        s.last_used = req.now;
                        issue = Issue::Reissued;
                        rec.count(Counter::SessionReissued);
                        rec.debug(|| {
                            format!(
                                "session re-issued session={} request_id={rid}",
                                tag(cfg, &s.id)
                            )
                        });
                    }
                    session = Some(s);
                }
                Err(reason) => {
                    rec.count(invalid_counter(reason));
                    let level = if matches!(reason, Invalid::ExpiredAbsolute | Invalid::ExpiredIdle)
                    {
                        Level::Debug
                    } else {
                        Level::Info
                    };
                    rec.log(
                        level,
                        format!(
                            "session cookie invalid: {} cookie={} request_id={rid}",
                            reason.as_str(),
                            value_tag(cfg, c.value)
                        ),
                    );
                }
            }
        }
        (n, Some(_)) => {
            rec.count(Counter::InvalidDuplicate);
            rec.log(
                Level::Info,
                format!("session cookie invalid: duplicate ({n} mesh cookies, possible cookie tossing) request_id={rid}"),
            );
        }
    }
    if found.count > 0 {
        let list: Vec<Vec<u8>> = req
            .cookies
            .iter()
            .filter_map(|h| match cookies::without_mesh_cookie(h, name) {
                Rewrite::Keep => Some(h.to_vec()),
                Rewrite::Drop => None,
                Rewrite::Replace(v) => Some(v),
            })
            .collect();
        edits.cookies = Some(list);
    }
    if session.is_none() && cfg.cookie.anonymous {
        match random_id() {
            Some(id) => {
                let s = Session::new(SessionId(id), req.now, None);
                rec.count(Counter::SessionMinted);
                rec.debug(|| {
                    format!(
                        "session minted session={} request_id={rid}",
                        tag(cfg, &s.id)
                    )
                });
                session = Some(s);
                issue = Issue::Minted;
            }
            None => {
                rec.count(Counter::InternalError);
                rec.log(
                    Level::Info,
                    format!("no randomness: session not minted request_id={rid}"),
                );
            }
        }
    }

    // What upstreams get: only the mesh's word on sessions.
    if !req.spoofed.is_empty() {
        rec.count_n(Counter::SpoofedHeadersRemoved, req.spoofed.len() as u64);
        rec.log(
            Level::Info,
            format!(
                "spoofed session headers removed: {} request_id={rid}",
                req.spoofed.join(",")
            ),
        );
        edits.remove = req.spoofed.iter().map(|s| s.to_string()).collect();
    }
    if let Some(s) = &session {
        edits
            .set
            .push((cfg.upstream.session_header.clone(), s.id.encoded()));
        if let Some(sub) = &s.subject {
            edits
                .set
                .push((cfg.upstream.subject_header.clone(), sub.clone()));
        }
    }
    RequestDecision {
        outcome: RequestOutcome::Forward(edits),
        pending: Pending {
            session,
            issue,
            next_id: None,
            may_signal: false,
            request_id: rid,
            now: req.now,
        },
        record: rec,
    }
}

/// The request goes to a cluster allowed to signal: draw the ID a rotation would commit and
/// return the header that tells the auth upstream. Separate from [`decide_request`] because
/// the glue reads the routed cluster (a host call) only after the request's edits, and checks
/// it again on the response.
pub fn grant_signal(
    cfg: &Config,
    pending: &mut Pending,
    rec: &mut Record,
    random_id: &mut dyn FnMut() -> Option<[u8; token::ID_LEN]>,
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

fn reply(r: LocalReply, req: &RequestView<'_>, rec: Record, rid: String) -> RequestDecision {
    RequestDecision {
        outcome: RequestOutcome::Reply(r),
        pending: Pending {
            session: None,
            issue: Issue::None,
            next_id: None,
            may_signal: false,
            request_id: rid,
            now: req.now,
        },
        record: rec,
    }
}

pub fn invalid_counter(reason: Invalid) -> Counter {
    match reason {
        Invalid::Forged => Counter::InvalidForged,
        Invalid::UnknownKey => Counter::InvalidUnknownKey,
        Invalid::Malformed => Counter::InvalidMalformed,
        Invalid::Oversized => Counter::InvalidOversized,
        Invalid::ExpiredAbsolute => Counter::InvalidExpiredAbsolute,
        Invalid::ExpiredIdle => Counter::InvalidExpiredIdle,
    }
}

/// What a response looks like to the filter.
#[derive(Debug, Default)]
pub struct ResponseView<'a> {
    pub debug_logs: bool,
    /// Every value of the signal header (normally one).
    pub signals: Vec<&'a [u8]>,
    pub subjects: Vec<&'a [u8]>,
    pub set_cookies: Vec<&'a [u8]>,
    /// Every `Cache-Control` value, joined with ", " (one header's worth).
    pub cache_control: Option<std::borrow::Cow<'a, [u8]>>,
    pub now: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetCookies {
    Unchanged,
    /// Add one `Set-Cookie`, keep the upstream's.
    Append(String),
    /// Replace every `Set-Cookie` with these, in order.
    Replace(Vec<Vec<u8>>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseEdits {
    pub remove: Vec<String>,
    pub set_cookies: SetCookies,
    pub cache_control: Option<Vec<u8>>,
}

#[derive(Debug)]
pub struct ResponseDecision {
    pub edits: ResponseEdits,
    pub record: Record,
}

enum MeshCookie {
    Keep,
    Set(Session),
    Expire,
}

/// Decides a response: honour (or refuse) the auth upstream's signal, issue the mesh
/// cookie, harden the upstream's cookies.
pub fn decide_response(cfg: &Config, p: &Pending, resp: &ResponseView<'_>) -> ResponseDecision {
    let mut rec = Record {
        debug: resp.debug_logs,
        ..Record::default()
    };
    let rid = &p.request_id;
    let mut remove = Vec::new();
    let mut mesh = match (p.issue, &p.session) {
        (Issue::Minted | Issue::Reissued, Some(s)) => MeshCookie::Set(s.clone()),
        _ => MeshCookie::Keep,
    };

    if !resp.signals.is_empty() {
        remove.push(cfg.signal.header.clone());
    }
    if !resp.subjects.is_empty() {
        remove.push(cfg.signal.subject_header.clone());
    }
    let conflicting = resp.signals.iter().any(|v| {
        resp.signals
            .first()
            .is_some_and(|f| !v.trim_ascii().eq_ignore_ascii_case(f.trim_ascii()))
    });
    if conflicting && p.may_signal {
        // `login` and `logout` on one response: fail closed, end the session.
        rec.count(Counter::SignalUnknown);
        rec.log(
            Level::Info,
            format!("conflicting signals: session ended request_id={rid}"),
        );
        mesh = MeshCookie::Expire;
    } else if let Some(first) = resp.signals.first() {
        let signal = first.trim_ascii();
        let subject = resp.subjects.first().map(|s| s.trim_ascii());
        if !p.may_signal {
            rec.count(Counter::SignalUntrusted);
            rec.log(
                Level::Info,
                format!("signal from an untrusted cluster ignored request_id={rid}"),
            );
        } else if signal.eq_ignore_ascii_case(b"login") || signal.eq_ignore_ascii_case(b"privilege")
        {
            let login = signal.eq_ignore_ascii_case(b"login");
            let new_subject = match subject {
                Some(s) if token::valid_subject(s) => Some(String::from_utf8_lossy(s).into_owned()),
                other => {
                    // A privilege change without a subject keeps the current one.
                    if login || other.is_some() {
                        rec.count(Counter::SignalInvalidSubject);
                        rec.log(
                            Level::Info,
                            format!("signal subject refused request_id={rid}"),
                        );
                    }
                    None
                }
            };
            let subject = if login {
                new_subject
            } else {
                new_subject.or_else(|| p.session.as_ref().and_then(|s| s.subject.clone()))
            };
            match p.next_id {
                Some(id) => {
                    let s = Session::new(id, resp.now, subject);
                    rec.count(if login {
                        Counter::RotationLogin
                    } else {
                        Counter::RotationPrivilege
                    });
                    rec.debug(|| {
                        format!(
                            "session rotated on {} from={} to={} request_id={rid}",
                            if login { "login" } else { "privilege" },
                            p.session
                                .as_ref()
                                .map_or_else(|| "-".to_string(), |s| tag(cfg, &s.id)),
                            tag(cfg, &s.id)
                        )
                    });
                    mesh = MeshCookie::Set(s);
                }
                None => {
                    // Never let the pre-login ID become authenticated: end it instead.
                    rec.count(Counter::InternalError);
                    rec.log(
                        Level::Info,
                        format!("rotation impossible, session ended request_id={rid}"),
                    );
                    mesh = MeshCookie::Expire;
                }
            }
        } else if signal.eq_ignore_ascii_case(b"logout") {
            rec.count(Counter::Logout);
            rec.debug(|| {
                format!(
                    "session ended on logout session={} request_id={rid}",
                    p.session
                        .as_ref()
                        .map_or_else(|| "-".to_string(), |s| tag(cfg, &s.id))
                )
            });
            mesh = MeshCookie::Expire;
        } else {
            rec.count(Counter::SignalUnknown);
            rec.log(
                Level::Info,
                format!("unknown signal ignored request_id={rid}"),
            );
        }
    }

    // Upstream cookies.
    let mut changed = false;
    let mut list: Vec<Vec<u8>> = Vec::with_capacity(resp.set_cookies.len() + 1);
    for v in &resp.set_cookies {
        match set_cookie::harden(
            v,
            cfg.cookie.name.as_bytes(),
            &cfg.url.params,
            cfg.cookie.secure,
        ) {
            Upstream::Keep => list.push(v.to_vec()),
            Upstream::Block => {
                changed = true;
                rec.count(Counter::UpstreamCookieBlocked);
                rec.log(
                    Level::Info,
                    format!("upstream Set-Cookie for the mesh cookie removed request_id={rid}"),
                );
            }
            Upstream::Harden(h) => {
                changed = true;
                rec.count(Counter::UpstreamCookieHardened);
                list.push(h);
            }
        }
    }

    let ours = match &mesh {
        MeshCookie::Keep => None,
        MeshCookie::Expire => Some(set_cookie::expired_mesh_cookie(&cfg.cookie)),
        MeshCookie::Set(s) => cfg.signing_key().and_then(|k| {
            token::encode(s, &cfg.cookie.name, k).map(|v| {
                set_cookie::mesh_cookie(
                    &cfg.cookie,
                    &v,
                    token::remaining_lifetime(s, resp.now, cfg.cookie.max_age_s),
                )
            })
        }),
    };
    let cache_control = ours
        .as_ref()
        .and_then(|_| set_cookie::cache_control_with_cookie(resp.cache_control.as_deref()));
    let set_cookies = match (ours, changed) {
        (None, false) => SetCookies::Unchanged,
        (Some(c), false) => SetCookies::Append(c),
        (ours, true) => {
            list.extend(ours.map(String::into_bytes));
            SetCookies::Replace(list)
        }
    };
    ResponseDecision {
        edits: ResponseEdits {
            remove,
            set_cookies,
            cache_control,
        },
        record: rec,
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]
mod tests {
    use super::*;
    use crate::config::{parse, Mode};

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const NOW: u64 = 1_800_000_000;

    fn cfg(extra: &str) -> Config {
        let json = format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]{extra}}}"#);
        parse(json.as_bytes(), &|_| None).unwrap()
    }

    fn rng() -> impl FnMut() -> Option<[u8; 16]> {
        let mut n = 0u8;
        move || {
            n += 1;
            Some([n; 16])
        }
    }

    fn view<'a>(cookies: Vec<&'a [u8]>) -> RequestView<'a> {
        RequestView {
            method: b"GET",
            path: Some(b"/"),
            cookies,
            now: NOW,
            ..Default::default()
        }
    }

    fn cookie_for(c: &Config, s: &Session) -> String {
        format!(
            "__Host-session={}",
            token::encode(s, "__Host-session", &c.keys[0]).unwrap()
        )
    }

    fn counters(r: &Record) -> Vec<&'static str> {
        r.counters.iter().map(|(c, _)| c.name()).collect()
    }

    fn forward(d: &RequestDecision) -> &RequestEdits {
        match &d.outcome {
            RequestOutcome::Forward(e) => e,
            RequestOutcome::Reply(r) => panic!("unexpected reply {r:?}"),
        }
    }

    #[test]
    fn request_without_cookie_gets_a_minted_session() {
        let c = cfg("");
        let d = decide_request(&c, &view(vec![]), &mut rng());
        assert_eq!(counters(&d.record), ["session_guard.session.minted"]);
        let e = forward(&d);
        assert_eq!(
            e.set,
            vec![("x-session-id".to_string(), SessionId([1; 16]).encoded())]
        );
        assert_eq!(e.cookies, None);
        assert_eq!(d.pending.issue, Issue::Minted);
    }

    #[test]
    fn no_anonymous_sessions_when_disabled() {
        let c = cfg(r#","cookie":{"anonymous":false}"#);
        let d = decide_request(&c, &view(vec![]), &mut rng());
        assert!(d.record.counters.is_empty());
        assert!(forward(&d).set.is_empty());
        assert_eq!(d.pending.session, None);
    }

    #[test]
    fn valid_cookie_is_used_and_removed_from_cookie_header() {
        let c = cfg("");
        let s = Session::new(SessionId([9; 16]), NOW - 10, Some("alice".into()));
        let hdr = format!("a=1; {}; b=2", cookie_for(&c, &s));
        let d = decide_request(&c, &view(vec![hdr.as_bytes()]), &mut rng());
        assert_eq!(counters(&d.record), ["session_guard.session.valid"]);
        let e = forward(&d);
        assert_eq!(e.cookies, Some(vec![b"a=1; b=2".to_vec()]));
        assert_eq!(
            e.set,
            vec![
                ("x-session-id".to_string(), SessionId([9; 16]).encoded()),
                ("x-session-subject".to_string(), "alice".to_string())
            ]
        );
        assert_eq!(d.pending.issue, Issue::None);
    }

    #[test]
    fn invalid_cookies_are_counted_by_reason_and_replaced() {
        let c = cfg(r#","cookie":{"max_age_s":100,"idle_timeout_s":50}"#);
        let fresh = Session::new(SessionId([9; 16]), NOW, None);
        let old = Session::new(SessionId([9; 16]), NOW - 100, None);
        let idle = Session {
            last_used: NOW - 51,
            ..Session::new(SessionId([9; 16]), NOW - 60, None)
        };
        let good = cookie_for(&c, &fresh);
        let other_key = crate::config::Key::new("k1", crate::config::Secret::new(vec![0; 32]));
        let forged = format!(
            "__Host-session={}",
            token::encode(&fresh, "__Host-session", &other_key).unwrap()
        );
        let cases: Vec<(&str, Vec<String>, &str)> = vec![
            (
                "forged",
                vec![forged],
                "session_guard.session.invalid.forged",
            ),
            (
                "absolute expiry",
                vec![cookie_for(&c, &old)],
                "session_guard.session.invalid.expired_absolute",
            ),
            (
                "idle expiry",
                vec![cookie_for(&c, &idle)],
                "session_guard.session.invalid.expired_idle",
            ),
            (
                "unknown key",
                vec![good.replace("v1.k1.", "v1.k2.")],
                "session_guard.session.invalid.unknown_key",
            ),
            (
                "malformed",
                vec!["__Host-session=hello".into()],
                "session_guard.session.invalid.malformed",
            ),
            (
                "duplicate, both valid",
                vec![good.clone(), good.clone()],
                "session_guard.session.invalid.duplicate",
            ),
            (
                "duplicate in one header",
                vec![format!("{good}; {good}")],
                "session_guard.session.invalid.duplicate",
            ),
            (
                "case-variant name fails the MAC",
                vec![good.replace("__Host-session", "__host-session")],
                "session_guard.session.invalid.forged",
            ),
        ];
        for (name, hdrs, counter) in cases {
            let refs: Vec<&[u8]> = hdrs.iter().map(|h| h.as_bytes()).collect();
            let d = decide_request(&c, &view(refs), &mut rng());
            assert_eq!(
                counters(&d.record),
                [counter, "session_guard.session.minted"],
                "{name}"
            );
            let e = forward(&d);
            assert_eq!(
                e.cookies,
                Some(vec![]),
                "{name}: the mesh cookie is never forwarded"
            );
            assert_eq!(
                e.set[0].1,
                SessionId([1; 16]).encoded(),
                "{name}: a fresh session"
            );
        }
    }

    #[test]
    fn active_session_is_reissued_after_a_tenth_of_idle_timeout() {
        let c = cfg("");
        let s = Session::new(SessionId([9; 16]), NOW - 180, None);
        let hdr = cookie_for(&c, &s);
        let d = decide_request(&c, &view(vec![hdr.as_bytes()]), &mut rng());
        assert_eq!(d.pending.issue, Issue::Reissued);
        assert_eq!(d.pending.session.as_ref().unwrap().last_used, NOW);
        assert_eq!(d.pending.session.as_ref().unwrap().id, s.id);
        let r = decide_response(
            &c,
            &d.pending,
            &ResponseView {
                now: NOW,
                ..Default::default()
            },
        );
        let SetCookies::Append(sc) = r.edits.set_cookies else {
            panic!()
        };
        assert!(sc.ends_with("Max-Age=43020"), "{sc}");
    }

    #[test]
    fn url_actions() {
        let strip = cfg("");
        let mut v = view(vec![]);
        v.path = Some(b"/a;jsessionid=1?x=1&jsessionid=2");
        let d = decide_request(&strip, &v, &mut rng());
        assert_eq!(forward(&d).path.as_deref(), Some(&b"/a?x=1"[..]));
        assert_eq!(
            counters(&d.record)[..2],
            [
                "session_guard.url.params_removed",
                "session_guard.url.stripped"
            ]
        );
        assert_eq!(d.record.counters[0].1, 2);

        let redirect = cfg(r#","url":{"action":"redirect"}"#);
        let RequestOutcome::Reply(r) = decide_request(&redirect, &v, &mut rng()).outcome else {
            panic!()
        };
        assert_eq!(r.status, 302);
        assert!(r.headers.contains(&("location", "/a?x=1".to_string())));
        assert!(r
            .headers
            .contains(&("cache-control", "no-store".to_string())));
        v.method = b"POST";
        let d = decide_request(&redirect, &v, &mut rng());
        assert_eq!(
            forward(&d).path.as_deref(),
            Some(&b"/a?x=1"[..]),
            "POST is stripped, not redirected"
        );

        let reject = cfg(r#","url":{"action":"reject"}"#);
        let RequestOutcome::Reply(r) = decide_request(&reject, &v, &mut rng()).outcome else {
            panic!()
        };
        assert_eq!(r.status, 400);
    }

    #[test]
    fn spoofed_headers_removed_and_next_id_only_for_signal_clusters() {
        let c = cfg("");
        let mut v = view(vec![]);
        v.spoofed = vec!["x-session-id", "x-session-subject"];
        let d = decide_request(&c, &v, &mut rng());
        assert_eq!(
            forward(&d).remove,
            vec!["x-session-id", "x-session-subject"]
        );
        assert!(!forward(&d)
            .set
            .iter()
            .any(|(n, _)| n == "x-session-id-next"));
        let mut d = decide_request(&c, &v, &mut rng());
        let (name, next) = grant_signal(&c, &mut d.pending, &mut d.record, &mut rng()).unwrap();
        assert_eq!(name, "x-session-id-next");
        assert!(d.pending.may_signal);
        assert_eq!(Some(next), d.pending.next_id.map(|i| i.encoded()));
    }

    fn pending(c: &Config, subject: Option<&str>, may_signal: bool) -> Pending {
        let _ = c;
        Pending {
            session: Some(Session::new(
                SessionId([9; 16]),
                NOW - 5,
                subject.map(String::from),
            )),
            issue: Issue::None,
            next_id: Some(SessionId([7; 16])),
            may_signal,
            request_id: "r1".into(),
            now: NOW,
        }
    }

    fn issued(c: &Config, r: &ResponseDecision) -> Option<Session> {
        let sc = match &r.edits.set_cookies {
            SetCookies::Append(s) => s.clone(),
            SetCookies::Replace(l) => String::from_utf8(l.last().unwrap().clone()).unwrap(),
            SetCookies::Unchanged => return None,
        };
        let v = sc.strip_prefix("__Host-session=")?.split(';').next()?;
        token::decode(v.as_bytes(), b"__Host-session", &c.keys).ok()
    }

    #[test]
    fn signals() {
        let c = cfg("");
        let rv = |sig: &'static [u8], sub: Option<&'static [u8]>| ResponseView {
            signals: vec![sig],
            subjects: sub.into_iter().collect(),
            now: NOW,
            ..Default::default()
        };
        // login commits exactly the forwarded next id, authenticated.
        let r = decide_response(&c, &pending(&c, None, true), &rv(b"login", Some(b"alice")));
        let s = issued(&c, &r).unwrap();
        assert_eq!(
            (s.id, s.subject.as_deref()),
            (SessionId([7; 16]), Some("alice"))
        );
        assert_eq!(counters(&r.record), ["session_guard.rotation.login"]);
        assert_eq!(
            r.edits.remove,
            vec!["x-session-guard", "x-session-guard-subject"]
        );
        assert_eq!(
            r.edits.cache_control.as_deref(),
            Some(&b"private, no-store"[..])
        );

        // login with a bad subject still rotates, unauthenticated.
        let r = decide_response(
            &c,
            &pending(&c, None, true),
            &rv(b"LOGIN", Some(b"bad\x01")),
        );
        let s = issued(&c, &r).unwrap();
        assert_eq!((s.id, s.subject), (SessionId([7; 16]), None));
        assert_eq!(
            counters(&r.record),
            [
                "session_guard.signal.invalid_subject",
                "session_guard.rotation.login"
            ]
        );

        // privilege keeps the subject unless given a new one.
        let r = decide_response(&c, &pending(&c, Some("bob"), true), &rv(b"privilege", None));
        let s = issued(&c, &r).unwrap();
        assert_eq!(
            (s.id, s.subject.as_deref()),
            (SessionId([7; 16]), Some("bob"))
        );
        let r = decide_response(
            &c,
            &pending(&c, Some("bob"), true),
            &rv(b"privilege", Some(b"root")),
        );
        assert_eq!(issued(&c, &r).unwrap().subject.as_deref(), Some("root"));

        // logout expires.
        let r = decide_response(&c, &pending(&c, Some("bob"), true), &rv(b"logout", None));
        assert_eq!(
            r.edits.set_cookies,
            SetCookies::Append(set_cookie::expired_mesh_cookie(&c.cookie))
        );

        // untrusted: ignored, removed, counted.
        let r = decide_response(
            &c,
            &pending(&c, None, false),
            &rv(b"login", Some(b"mallory")),
        );
        assert_eq!(r.edits.set_cookies, SetCookies::Unchanged);
        assert_eq!(r.edits.remove.len(), 2);
        assert_eq!(counters(&r.record), ["session_guard.signal.untrusted"]);

        // conflicting values fail closed.
        let both = ResponseView {
            signals: vec![b"login", b"logout"],
            now: NOW,
            ..Default::default()
        };
        let r = decide_response(&c, &pending(&c, None, true), &both);
        assert_eq!(
            r.edits.set_cookies,
            SetCookies::Append(set_cookie::expired_mesh_cookie(&c.cookie))
        );

        // unknown value.
        let r = decide_response(&c, &pending(&c, None, true), &rv(b"promote", None));
        assert_eq!(r.edits.set_cookies, SetCookies::Unchanged);
        assert_eq!(counters(&r.record), ["session_guard.signal.unknown"]);
    }

    #[test]
    fn upstream_set_cookies_blocked_hardened_and_kept_several() {
        let c = cfg("");
        let p = Pending {
            issue: Issue::Minted,
            ..pending(&c, None, false)
        };
        let r = decide_response(
            &c,
            &p,
            &ResponseView {
                set_cookies: vec![
                    b"__Host-session=evil",
                    b"theme=dark",
                    b"a=1; Secure; SameSite=Strict",
                ],
                cache_control: Some(std::borrow::Cow::Borrowed(b"public, max-age=60")),
                now: NOW,
                ..Default::default()
            },
        );
        let SetCookies::Replace(l) = &r.edits.set_cookies else {
            panic!()
        };
        assert_eq!(l.len(), 3);
        assert_eq!(l[0], b"theme=dark; Secure; SameSite=Lax");
        assert_eq!(l[1], b"a=1; Secure; SameSite=Strict");
        assert!(l[2].starts_with(b"__Host-session=v1.k1."));
        assert_eq!(
            r.edits.cache_control.as_deref(),
            Some(&b"private, max-age=60"[..])
        );
        assert_eq!(
            counters(&r.record),
            [
                "session_guard.upstream_cookie.blocked",
                "session_guard.upstream_cookie.hardened"
            ]
        );
    }

    #[test]
    fn monitor_mode_decides_the_same() {
        let e = cfg("");
        let m = cfg(r#","mode":"monitor""#);
        assert_eq!(m.mode, Mode::Monitor);
        let mut v = view(vec![b"__Host-session=junk"]);
        v.path = Some(b"/?jsessionid=1");
        let a = decide_request(&e, &v, &mut rng());
        let b = decide_request(&m, &v, &mut rng());
        assert_eq!(counters(&a.record), counters(&b.record));
    }
}
