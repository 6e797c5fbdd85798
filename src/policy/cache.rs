//! When a session is committed (`docs/design.md`, "When a session is committed").
//!
//! A request without a valid session gets a fresh ID drawn and forwarded as `x-session-id`;
//! its response commits it (signs it, sets the cookie) unless the response is
//! *shared-cacheable* and needs no session. A shared cache in front of the mesh (CDN,
//! Varnish) fetches from the origin without the browser's cookies: committing there would
//! put a `Set-Cookie` on every origin fetch and make every stored response uncacheable.
//! The ID never committed is never valid later: it was never signed.
//!
//! Reads only what [`super::ResponseView`] already holds (no host call).

use super::{Issue, MeshCookie, Pending, Record, ResponseView};
use crate::metrics::Counter;

/// Whether a shared cache may store the response as the upstream sent it: `Cache-Control`
/// with `public` or `s-maxage`, or a targeted field (`CDN-Cache-Control`,
/// `Surrogate-Control`, ...) with a positive `max-age`; in either, never with `no-store` or
/// an unqualified `private`. Only a response that sets no cookie and carries no signal counts
/// (the caller checks those).
#[inline(never)]
pub fn shared_cacheable(resp: &ResponseView<'_>) -> bool {
    let cc = resp
        .cache_control
        .as_deref()
        .is_some_and(|v| !any_directive(v, forbidding) && any_directive(v, sharing));
    cc || resp
        .targeted_cache
        .iter()
        .any(|(_, v)| !any_directive(v, forbidding) && any_directive(v, positive_max_age))
}

/// `304` (a cache merges its fields into the stored object, RFC 9111 §4.3.4) and `206` (a
/// part of a stored object) never carry a minted or re-issued cookie.
pub fn partial(status: Option<&[u8]>) -> bool {
    matches!(status, Some(b"304" | b"206"))
}

fn forbidding(name: &[u8], arg: Option<&[u8]>) -> bool {
    name.eq_ignore_ascii_case(b"no-store")
        || (name.eq_ignore_ascii_case(b"private") && arg.is_none())
}

fn sharing(name: &[u8], _: Option<&[u8]>) -> bool {
    name.eq_ignore_ascii_case(b"public") || name.eq_ignore_ascii_case(b"s-maxage")
}

fn positive_max_age(name: &[u8], arg: Option<&[u8]>) -> bool {
    if !name.eq_ignore_ascii_case(b"max-age") {
        return false;
    }
    let arg = arg.unwrap_or_default();
    let arg = arg.strip_prefix(b"\"").unwrap_or(arg);
    let n = arg.iter().take_while(|b| b.is_ascii_digit()).count();
    n > 0 && arg.iter().take(n).any(|&b| b != b'0')
}

/// Whether one of the comma-separated directives of `v` (name, argument) satisfies `f`.
#[inline(never)]
fn any_directive(v: &[u8], f: fn(&[u8], Option<&[u8]>) -> bool) -> bool {
    v.split(|&b| b == b',').any(|d| {
        let (name, arg) = match d.iter().position(|&b| b == b'=') {
            Some(i) => (d.get(..i), d.get(i + 1..).map(<[u8]>::trim_ascii)),
            None => (Some(d), None),
        };
        let name = name.unwrap_or_default().trim_ascii();
        !name.is_empty() && f(name, arg)
    })
}

/// The mesh cookie as the request decided it, under the commit rule: a fresh ID is committed
/// unless the response is shared-cacheable (or, for a request `cookie.anonymous: "navigate"`
/// does not mint for, unless it sets a cookie); a re-issue waits for a response that is not
/// shared-cacheable. Neither lands on a `304` or `206`. Counts what happened.
#[inline(never)]
pub fn commit(p: &Pending, resp: &ResponseView<'_>, rec: &mut Record) -> MeshCookie {
    let (Some(s), false) = (&p.session, p.issue == Issue::None) else {
        return MeshCookie::Keep;
    };
    let sets_cookie = !resp.set_cookies.is_empty();
    let held = partial(resp.status) || (!sets_cookie && shared_cacheable(resp));
    let minted = p.issue == Issue::Minted;
    let counter = match (
        minted,
        held || (minted && p.navigation_only && !sets_cookie),
    ) {
        (true, true) => Counter::SessionNotCommitted,
        (true, false) => Counter::SessionMinted,
        (false, true) => return MeshCookie::Keep,
        (false, false) => Counter::SessionReissued,
    };
    rec.count(counter);
    if counter == Counter::SessionNotCommitted {
        return MeshCookie::Keep;
    }
    MeshCookie::Set(s.clone())
}
