//! Binding the apps' own session cookies (`app_cookies`) to the mesh session.
//!
//! On responses, an upstream `Set-Cookie` of a listed name binds (name, value) to the mesh
//! session the response leaves in the browser: the session records a MAC of the pair keyed
//! by its own ID, never the value. On requests, a listed cookie whose value is not bound to
//! the request's valid mesh session never reaches the app. A tossed app cookie (a sibling
//! subdomain's `Domain=` cookie, an attacker's genuine session) is therefore dropped, the app
//! starts a fresh session for the victim, and the planted one never becomes authenticated.

use super::{tag, value_tag, Issue, MeshCookie, Pending, Record};
use crate::config::cookie_names;
use crate::config::Config;
use crate::cookies::{self, Crumb, Rewrite};
use crate::metrics::Counter;
use crate::set_cookie;
use crate::token::{Session, SessionId};
use std::fmt;

/// An app session cookie valid on a request, kept (in memory, for this request only) so its
/// binding can follow a rotation. `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct AppCookie {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

impl fmt::Debug for AppCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppCookie(<redacted>)")
    }
}

/// Whether an upstream's `Set-Cookie` name is one of `app_cookies` (see `cookie_names.rs`).
fn listed(cfg: &Config, name: &[u8]) -> bool {
    cookie_names::name_listed(cfg, name)
}

/// What the app-cookie filter did to a request.
#[derive(Debug, Default)]
pub struct Filtered {
    /// The new `Cookie` headers; `None`: unchanged from what was passed in.
    pub cookies: Option<Vec<Vec<u8>>>,
    /// The listed cookies that passed (bound or adopted).
    pub kept: Vec<AppCookie>,
}

/// Removes every listed app cookie not bound to `session` from the `Cookie` headers
/// (`current`, or `original` when the mesh cookie step changed nothing). Within
/// `app_cookies.adopt_until` an unbound one is bound instead (the session is re-issued).
pub fn filter_request(
    cfg: &Config,
    original: &[&[u8]],
    current: Option<Vec<Vec<u8>>>,
    mut session: Option<&mut Session>,
    issue: &mut Issue,
    now: u64,
    rec: &mut Record,
) -> Filtered {
    let headers: Vec<&[u8]> = match &current {
        Some(list) => list.iter().map(Vec::as_slice).collect(),
        None => original.to_vec(),
    };
    let any = |h: &&[u8]| cookies::crumbs(h).any(|c| cookie_names::suspect(cfg, c.name, c.value));
    if !cfg.app_cookies_enabled() || !headers.iter().any(any) {
        return Filtered {
            cookies: current,
            kept: Vec::new(),
        };
    }
    // Adoption only into a session valid on this request, never into one minted for it (a
    // request whose mesh cookie was refused, e.g. a tossed duplicate, adopts nothing).
    let adopt = cfg.app_cookies.adopt_until.is_some_and(|t| now < t) && *issue != Issue::Minted;
    let mut kept = Vec::new();
    let mut out = Vec::with_capacity(headers.len());
    let mut tally = Tally::default();
    for h in &headers {
        let rewrite = cookies::retain(h, |c| {
            if !cookie_names::suspect(cfg, c.name, c.value) {
                return true;
            }
            // Only a crumb that is plainly a listed cookie is adopted; one that a parser reads
            // as such only by trimming, decoding or splitting passes only when bound.
            let adopt = adopt && cookie_names::adoptable(cfg, c.name, c.value);
            let pass = admit(c, session.as_deref_mut(), adopt, issue, rec, &mut tally);
            if pass {
                kept.push(AppCookie {
                    name: c.name.to_vec(),
                    value: c.value.to_vec(),
                });
            }
            pass
        });
        match rewrite {
            Rewrite::Keep => out.push(h.to_vec()),
            Rewrite::Drop => {}
            Rewrite::Replace(v) => out.push(v),
        }
    }
    tally.report(session.as_deref(), rec);
    Filtered {
        cookies: Some(out),
        kept,
    }
}

/// What happened to a request's listed crumbs: counted and logged once per request, whatever
/// the number of crumbs (a 56 KB `Cookie` header of repeated crumbs is one line, not 4,000).
#[derive(Default)]
struct Tally {
    adopted: u64,
    removed: u64,
    /// Value hashes of the first few removed (adopted) crumbs, for the log line, with `,`.
    removed_tags: (usize, String),
    adopted_tags: (usize, String),
}

/// How many value hashes a log line names.
const LOGGED_TAGS: usize = 3;

impl Tally {
    fn note(tags: &mut (usize, String), value: &[u8]) {
        if tags.0 < LOGGED_TAGS {
            if tags.0 > 0 {
                tags.1.push(',');
            }
            tags.1.push_str(&value_tag(value));
            tags.0 += 1;
        }
    }
    fn report(self, session: Option<&Session>, rec: &mut Record) {
        let session = session.map_or_else(|| "-".to_string(), |s| tag(&s.id));
        if self.adopted > 0 {
            rec.count_n(Counter::AppCookieAdopted, self.adopted);
            rec.info(format_args!(
                "app cookies adopted: {} cookies={} session={session}",
                self.adopted, self.adopted_tags.1
            ));
        }
        if self.removed > 0 {
            rec.count_n(Counter::AppCookieUnbound, self.removed);
            rec.info(format_args!(
                "app cookies removed: {} not bound to the session cookies={} session={session}",
                self.removed, self.removed_tags.1
            ));
        }
    }
}

/// One listed crumb: bound (passes), adopted (bound now, passes) or removed.
fn admit(
    c: &Crumb<'_>,
    session: Option<&mut Session>,
    adopt: bool,
    issue: &mut Issue,
    rec: &mut Record,
    tally: &mut Tally,
) -> bool {
    match session {
        Some(s) if s.is_bound(c.name, c.value) => true,
        // Adoption binds a name that has no binding yet, once: it never replaces a bound
        // value, and a second value of the same name on the request is removed.
        Some(s) if adopt && !c.value.is_empty() && !s.has_binding_for(c.name) => {
            if s.bind(s.id.binding(c.name, c.value)) {
                rec.count(Counter::AppCookieOverLimit);
            }
            tally.adopted += 1;
            Tally::note(&mut tally.adopted_tags, c.value);
            if *issue == Issue::None {
                *issue = Issue::Reissued;
            }
            true
        }
        _ => {
            tally.removed += 1;
            Tally::note(&mut tally.removed_tags, c.value);
            false
        }
    }
}

/// A new session's bindings, fingerprint and scope, from what the request carried: used for
/// rotation (bindings follow) and for a session created to hold a binding.
pub fn new_session(p: &Pending, id: SessionId, now: u64, subject: Option<String>) -> Session {
    let mut s = fresh_session(id, now, subject, p.scope, p.ua.as_ref());
    // A login while bound (and proven) keeps the device key: the ticket names the key, not the ID.
    s.device = p.device;
    for c in &p.app_cookies {
        s.bind(id.binding(&c.name, &c.value));
    }
    s
}

/// A new session of this scope, with the client's fingerprint when fingerprints are on.
pub fn fresh_session(
    id: SessionId,
    now: u64,
    subject: Option<String>,
    scope: [u8; crate::token::TAG_LEN],
    ua: Option<&[u8; 32]>,
) -> Session {
    let mut s = Session::new(id, now, subject);
    s.scope = scope;
    if let Some(ua) = ua {
        s.client = id.client_fingerprint(ua);
    }
    s
}

/// Records the upstream's listed `Set-Cookie`s in the session the response leaves in the
/// browser: a value binds, a deletion releases. The mesh cookie is (re-)issued when a binding
/// changed. A response that ends the session binds nothing.
pub fn bind_response(
    cfg: &Config,
    mesh: &mut MeshCookie,
    p: &Pending,
    set_cookies: &[&[u8]],
    rec: &mut Record,
) {
    if !cfg.app_cookies_enabled() {
        return;
    }
    let listed: Vec<(&[u8], &[u8], bool)> = set_cookies
        .iter()
        .filter_map(|v| set_cookie::parse_app_cookie(v, p.now))
        .filter(|(name, _, _)| listed(cfg, name))
        .collect();
    if listed.is_empty() {
        return;
    }
    let Some(mut s) = target_session(mesh, p, rec) else {
        return;
    };
    let mut changed = matches!(mesh, MeshCookie::Set(_));
    for (name, value, deleting) in listed {
        if deleting || value.is_empty() {
            if s.unbind(name) {
                rec.count(Counter::AppCookieReleased);
                changed = true;
            }
            continue;
        }
        let b = s.id.binding(name, value);
        if s.bindings.contains(&b) {
            continue;
        }
        if s.bind(b) {
            rec.count(Counter::AppCookieOverLimit);
            rec.info(format_args!(
                "app cookie binding dropped: over the limit of 8"
            ));
        }
        rec.count(Counter::AppCookieBound);
        rec.debug(|| format!("app cookie bound session={}", tag(&s.id)));
        changed = true;
    }
    if changed {
        *mesh = MeshCookie::Set(s);
    }
}

/// The session a binding goes to: the one set on this response, else the request's, else a
/// new one (on the ID drawn in advance), whatever `cookie.anonymous` says.
fn target_session(mesh: &MeshCookie, p: &Pending, rec: &mut Record) -> Option<Session> {
    match mesh {
        MeshCookie::Expire => None,
        MeshCookie::Set(s) => Some(s.clone()),
        MeshCookie::Keep => {
            if let Some(s) = &p.session {
                return Some(s.clone());
            }
            let Some(id) = p.spare_id else {
                rec.count(Counter::InternalError);
                return None;
            };
            rec.count(Counter::SessionMinted);
            let s = new_session(p, id, p.now, None);
            rec.debug(|| {
                format!(
                    "session minted to bind an app cookie session={}",
                    tag(&s.id)
                )
            });
            Some(s)
        }
    }
}

#[cfg(test)]
#[path = "app_cookies_tests.rs"]
mod tests;
