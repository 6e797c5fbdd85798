//! Binding the apps' own session cookies (`app_cookies`) to the mesh session.
//!
//! On responses, an upstream `Set-Cookie` of a listed name binds (name, value) to the mesh
//! session the response leaves in the browser: the session records a MAC of the pair keyed
//! by its own ID, never the value. On requests, a listed cookie whose value is not bound to
//! the request's valid mesh session never reaches the app. A tossed app cookie (a sibling
//! subdomain's `Domain=` cookie, an attacker's genuine session) is therefore dropped, the app
//! starts a fresh session for the victim, and the planted one never becomes authenticated.

use super::{tag, value_tag, Issue, MeshCookie, Pending, Record};
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

/// Whether a cookie name is one of `app_cookies`, as the apps read names: ASCII
/// case-insensitively, and also after the rewriting PHP applies when it builds `$_COOKIE`
/// (`.`, space and `[` become `_`, surrounding whitespace goes), so `laravel.session` counts
/// as `laravel_session`: PHP would hand it to the app under that name.
/// Runs for every crumb of every request with cookies: compares without allocating.
fn listed(cfg: &Config, name: &[u8]) -> bool {
    let name = trim_all(name);
    cfg.app_cookies.names.iter().any(|n| {
        let n = n.as_bytes();
        n.len() == name.len() && n.iter().zip(name).all(|(&a, &b)| canon(a) == canon(b))
    })
}

fn trim_all(name: &[u8]) -> &[u8] {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c | 0xa0);
    let start = name.iter().position(|b| !ws(b)).unwrap_or(name.len());
    let end = name.iter().rposition(|b| !ws(b)).map_or(start, |i| i + 1);
    name.get(start..end).unwrap_or_default()
}

/// A name byte as PHP's `$_COOKIE` and ASCII case-insensitive comparison read it.
fn canon(b: u8) -> u8 {
    match b {
        b'.' | b' ' | b'[' => b'_',
        b => b.to_ascii_lowercase(),
    }
}

/// A crumb that is not listed itself but hides a listed name behind a `,` in its value
/// (`a=1, laravel_session=x`), which parsers splitting on `,` (old Rack, some Java servers)
/// read as a cookie of its own.
fn hides_listed(cfg: &Config, value: &[u8]) -> bool {
    value.contains(&b',')
        && value.split(|&b| b == b',').skip(1).any(|piece| {
            let name = piece.split(|&b| b == b'=').next().unwrap_or_default();
            piece.contains(&b'=') && listed(cfg, name)
        })
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
    let any =
        |h: &&[u8]| cookies::crumbs(h).any(|c| listed(cfg, c.name) || hides_listed(cfg, c.value));
    if !cfg.app_cookies_enabled() || !headers.iter().any(any) {
        return Filtered {
            cookies: current,
            kept: Vec::new(),
        };
    }
    let adopt = cfg.app_cookies.adopt_until.is_some_and(|t| now < t);
    let mut kept = Vec::new();
    let mut out = Vec::with_capacity(headers.len());
    for h in &headers {
        let rewrite = cookies::retain(h, |c| {
            if !listed(cfg, c.name) && !hides_listed(cfg, c.value) {
                return true;
            }
            let pass = admit(c, session.as_deref_mut(), adopt, issue, rec);
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
    Filtered {
        cookies: Some(out),
        kept,
    }
}

/// One listed crumb: bound (passes), adopted (bound now, passes) or removed.
fn admit(
    c: &Crumb<'_>,
    session: Option<&mut Session>,
    adopt: bool,
    issue: &mut Issue,
    rec: &mut Record,
) -> bool {
    match session {
        Some(s) if s.is_bound(c.name, c.value) => true,
        // Adoption binds a name that has no binding yet, once: it never replaces a bound
        // value, and a second value of the same name on the request is removed.
        Some(s) if adopt && !c.value.is_empty() && !s.has_binding_for(c.name) => {
            if s.bind(s.id.binding(c.name, c.value)) {
                rec.count(Counter::AppCookieOverLimit);
            }
            rec.count(Counter::AppCookieAdopted);
            rec.info(format_args!(
                "app cookie adopted name={} cookie={} session={}",
                String::from_utf8_lossy(c.name),
                value_tag(c.value),
                tag(&s.id)
            ));
            if *issue == Issue::None {
                *issue = Issue::Reissued;
            }
            true
        }
        s => {
            rec.count(Counter::AppCookieUnbound);
            let session = s.map_or_else(|| "-".to_string(), |s| tag(&s.id));
            rec.info(format_args!(
                "app cookie removed: not bound to the session name={} cookie={} session={session}",
                String::from_utf8_lossy(c.name),
                value_tag(c.value)
            ));
            false
        }
    }
}

/// A new session's bindings, fingerprint and scope, from what the request carried: used for
/// rotation (bindings follow) and for a session created to hold a binding.
pub fn new_session(p: &Pending, id: SessionId, now: u64, subject: Option<String>) -> Session {
    let mut s = fresh_session(id, now, subject, p.scope, p.ua.as_ref());
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
