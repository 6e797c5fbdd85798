//! `Set-Cookie`: the mesh cookie the filter issues, and the hardening of upstream cookies.

use crate::config::CookieConfig;

/// `Set-Cookie` for the mesh cookie. No `Domain`: with the `__Host-` prefix a browser would
/// refuse one, and without it the cookie stays host-only, out of reach of sibling subdomains.
pub fn mesh_cookie(cfg: &CookieConfig, value: &str, max_age_s: u64) -> String {
    let mut s = String::with_capacity(cfg.name.len() + value.len() + 80);
    s.push_str(&cfg.name);
    s.push('=');
    s.push_str(value);
    s.push_str("; Path=/");
    if cfg.secure {
        s.push_str("; Secure");
    }
    s.push_str("; HttpOnly; SameSite=");
    s.push_str(cfg.same_site.as_str());
    s.push_str("; Max-Age=");
    s.push_str(&max_age_s.to_string());
    s
}

/// `Set-Cookie` that makes the browser drop the mesh cookie.
pub fn expired_mesh_cookie(cfg: &CookieConfig) -> String {
    mesh_cookie(cfg, "", 0)
}

/// What happens to one upstream `Set-Cookie` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// Already carries what it needs.
    Keep,
    /// Sets the mesh cookie's name: only the mesh may.
    Block,
    /// The value with the missing attributes appended.
    Harden(Vec<u8>),
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    v.get(start..end).unwrap_or(&[])
}

/// The cookie name of a `Set-Cookie` value (bytes before the first `=` of the first pair).
pub fn cookie_name(value: &[u8]) -> &[u8] {
    let pair = value.split(|&b| b == b';').next().unwrap_or(&[]);
    match pair.iter().position(|&b| b == b'=') {
        Some(i) => trim(pair.get(..i).unwrap_or(&[])),
        None => &[],
    }
}

/// A nameless cookie that a browser would send back as `mesh_name=...`: `=name=value` (an
/// empty name, the value holding `name=value`) or a bare `name` without `=`. Browsers
/// without RFC 6265bis's nameless-cookie check serialize a nameless cookie as its value
/// alone, so `Set-Cookie: =__Host-session=v` returns as `Cookie: __Host-session=v`.
fn nameless_sets(value: &[u8], mesh_name: &[u8]) -> bool {
    let pair = trim(value.split(|&b| b == b';').next().unwrap_or(&[]));
    match pair.iter().position(|&b| b == b'=') {
        None => pair.eq_ignore_ascii_case(mesh_name),
        Some(i) if trim(pair.get(..i).unwrap_or(&[])).is_empty() => {
            let inner = trim(pair.get(i + 1..).unwrap_or(&[]));
            let inner_name = match inner.iter().position(|&b| b == b'=') {
                Some(j) => trim(inner.get(..j).unwrap_or(&[])),
                None => inner,
            };
            inner_name.eq_ignore_ascii_case(mesh_name)
        }
        Some(_) => false,
    }
}

/// Hardens an upstream `Set-Cookie`. Cookies named like session parameters get `Secure`,
/// `HttpOnly` and `SameSite`; others get `Secure` and `SameSite` only, because page scripts
/// may legitimately read them. `secure` is false only in plain-HTTP development setups.
pub fn harden(value: &[u8], mesh_name: &[u8], session_names: &[String], secure: bool) -> Upstream {
    let name = cookie_name(value);
    if name.eq_ignore_ascii_case(mesh_name) || nameless_sets(value, mesh_name) {
        return Upstream::Block;
    }
    let (mut has_secure, mut has_http_only, mut has_same_site) = (false, false, false);
    for attr in value.split(|&b| b == b';').skip(1) {
        let attr_name = trim(attr.split(|&b| b == b'=').next().unwrap_or(&[]));
        has_secure |= attr_name.eq_ignore_ascii_case(b"secure");
        has_http_only |= attr_name.eq_ignore_ascii_case(b"httponly");
        has_same_site |= attr_name.eq_ignore_ascii_case(b"samesite");
    }
    let session_like = crate::url::name_matches(name, session_names);
    let add_secure = secure && !has_secure;
    let add_http_only = session_like && !has_http_only;
    let add_same_site = !has_same_site;
    if !(add_secure || add_http_only || add_same_site) {
        return Upstream::Keep;
    }
    let mut out = trim(value).to_vec();
    while out.last() == Some(&b';') {
        out.pop();
    }
    if add_secure {
        out.extend_from_slice(b"; Secure");
    }
    if add_http_only {
        out.extend_from_slice(b"; HttpOnly");
    }
    if add_same_site {
        out.extend_from_slice(b"; SameSite=Lax");
    }
    Upstream::Harden(out)
}

/// Response fields that tell a shared cache how to store a response *before* it reads
/// `Cache-Control`: `CDN-Cache-Control` (RFC 9213) and its vendor forms
/// (`Cloudflare-CDN-Cache-Control`, `Vercel-CDN-Cache-Control`, any `*-CDN-Cache-Control`),
/// `Surrogate-Control` (Fastly, Varnish, Akamai ESI) and Akamai's `Edge-Control`. On a response
/// that sets or expires the mesh cookie each is replaced by `no-store`. `name` is lowercase,
/// as Envoy hands header names to filters.
pub fn is_targeted_cache_field(name: &str) -> bool {
    name == "cdn-cache-control"
        || name.ends_with("-cdn-cache-control")
        || name == "surrogate-control"
        || name == "edge-control"
}

/// The `Cache-Control` a response needs when the mesh sets or expires its cookie on it:
/// never storable by shared caches. `None` when the upstream's value already ensures that.
pub fn cache_control_with_cookie(existing: Option<&[u8]>) -> Option<Vec<u8>> {
    let Some(existing) = existing else {
        return Some(b"private, no-store".to_vec());
    };
    let directives: Vec<&[u8]> = existing
        .split(|&b| b == b',')
        .map(trim)
        .filter(|d| !d.is_empty())
        .collect();
    let name = |d: &[u8]| -> Vec<u8> {
        trim(d.split(|&b| b == b'=').next().unwrap_or(&[])).to_ascii_lowercase()
    };
    let shared_cacheable = |d: &&[u8]| {
        let n = name(d);
        n == b"public" || n == b"s-maxage"
    };
    // `private="set-cookie"` (with field names) only protects those fields: not enough.
    let private = directives
        .iter()
        .any(|d| matches!(name(d).as_slice(), b"private" | b"no-store") && !d.contains(&b'='));
    if private && !directives.iter().any(shared_cacheable) {
        return None;
    }
    // Keep the upstream's other directives (max-age for the browser, no-cache, ...).
    let mut out = b"private".to_vec();
    for d in directives.iter().filter(|d| !shared_cacheable(d)) {
        if name(d) == b"private" && !d.contains(&b'=') {
            continue;
        }
        out.extend_from_slice(b", ");
        out.extend_from_slice(d);
    }
    Some(out)
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
    use crate::config::SameSite;

    fn cfg() -> CookieConfig {
        CookieConfig {
            name: "__Host-session".into(),
            same_site: SameSite::Lax,
            secure: true,
            max_age_s: 43_200,
            idle_timeout_s: 1800,
            anonymous: true,
        }
    }

    #[test]
    fn mesh_cookie_has_host_prefix_attributes() {
        assert_eq!(
            mesh_cookie(&cfg(), "v1.k1.a.b", 120),
            "__Host-session=v1.k1.a.b; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=120"
        );
        assert_eq!(
            expired_mesh_cookie(&cfg()),
            "__Host-session=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"
        );
    }

    #[test]
    fn upstream_cookies_are_blocked_or_hardened() {
        let names = vec!["jsessionid".to_string(), "__host-session".to_string()];
        let cases: Vec<(&str, &[u8], Upstream)> = vec![
            (
                "mesh name is blocked",
                b"__Host-session=evil; Path=/",
                Upstream::Block,
            ),
            (
                "mesh name in another case is blocked",
                b"__HOST-SESSION=evil",
                Upstream::Block,
            ),
            (
                "nameless cookie carrying the mesh cookie is blocked",
                b"=__Host-session=v1.k1.a.b; Path=/; Secure",
                Upstream::Block,
            ),
            (
                "nameless, whitespace and case variants",
                b" = __HOST-SESSION =v; Path=/",
                Upstream::Block,
            ),
            (
                "nameless without a value",
                b"=__host-session",
                Upstream::Block,
            ),
            (
                "bare mesh name without =",
                b"__Host-session; Path=/",
                Upstream::Block,
            ),
            (
                "nameless cookie of another name is only hardened",
                b"=theme=dark; Secure; SameSite=Lax",
                Upstream::Keep,
            ),
            (
                "session-like gets all three",
                b"JSESSIONID=abc; Path=/",
                Upstream::Harden(
                    b"JSESSIONID=abc; Path=/; Secure; HttpOnly; SameSite=Lax".to_vec(),
                ),
            ),
            (
                "other cookie never gets HttpOnly",
                b"theme=dark",
                Upstream::Harden(b"theme=dark; Secure; SameSite=Lax".to_vec()),
            ),
            (
                "existing attributes respected, any case",
                b"theme=dark; secure; samesite=Strict",
                Upstream::Keep,
            ),
            (
                "SameSite=None kept, Secure added",
                b"t=1; SameSite=None",
                Upstream::Harden(b"t=1; SameSite=None; Secure".to_vec()),
            ),
            (
                "session-like complete is kept",
                b"jsessionid=1; HttpOnly; Secure; SameSite=Lax",
                Upstream::Keep,
            ),
            (
                "trailing semicolon tidied",
                b"a=1;",
                Upstream::Harden(b"a=1; Secure; SameSite=Lax".to_vec()),
            ),
            (
                "value bytes kept",
                b"a=\xff\"x\"; Expires=Wed, 21 Oct 2026 07:28:00 GMT",
                Upstream::Harden(
                    b"a=\xff\"x\"; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Secure; SameSite=Lax"
                        .to_vec(),
                ),
            ),
            (
                "attribute named like secure in a value does not count",
                b"a=secure; Path=/",
                Upstream::Harden(b"a=secure; Path=/; Secure; SameSite=Lax".to_vec()),
            ),
        ];
        for (name, v, want) in cases {
            assert_eq!(harden(v, b"__Host-session", &names, true), want, "{name}");
        }
        assert_eq!(
            harden(b"a=1", b"__Host-session", &names, false),
            Upstream::Harden(b"a=1; SameSite=Lax".to_vec())
        );
    }

    #[test]
    fn targeted_cache_fields_are_recognised() {
        for n in [
            "cdn-cache-control",
            "cloudflare-cdn-cache-control",
            "vercel-cdn-cache-control",
            "surrogate-control",
            "edge-control",
        ] {
            assert!(is_targeted_cache_field(n), "{n}");
        }
        for n in [
            "cache-control",
            "x-cache",
            "surrogate-key",
            "cdn-loop",
            "cdn-cache-controls",
        ] {
            assert!(!is_targeted_cache_field(n), "{n}");
        }
    }

    #[test]
    fn cache_control_never_shared_cacheable() {
        let cases: Vec<(&str, Option<&[u8]>, Option<&[u8]>)> = vec![
            ("absent", None, Some(b"private, no-store")),
            ("already private", Some(b"private, max-age=60"), None),
            ("already no-store", Some(b"no-store"), None),
            (
                "public replaced",
                Some(b"public, max-age=3600"),
                Some(b"private, max-age=3600"),
            ),
            (
                "s-maxage removed",
                Some(b"max-age=60, s-maxage=600"),
                Some(b"private, max-age=60"),
            ),
            (
                "private but public too",
                Some(b"private, public"),
                Some(b"private"),
            ),
            (
                "no-cache alone is not enough",
                Some(b"no-cache"),
                Some(b"private, no-cache"),
            ),
            (
                "case-insensitive",
                Some(b"PUBLIC, S-MAXAGE=5, No-Cache"),
                Some(b"private, No-Cache"),
            ),
        ];
        for (name, existing, want) in cases {
            assert_eq!(
                cache_control_with_cookie(existing).as_deref(),
                want,
                "{name}"
            );
        }
    }
}
