//! `Set-Cookie`: the mesh cookie the filter issues, and the hardening of upstream cookies.

use crate::config::CookieConfig;

/// `Set-Cookie` for the mesh cookie. No `Domain`: with the `__Host-` prefix a browser would
/// refuse one, and without it the cookie stays host-only, out of reach of sibling subdomains.
pub fn mesh_cookie(cfg: &CookieConfig, value: &str, max_age_s: u64) -> String {
    named_cookie(&cfg.name, cfg, value, max_age_s)
}

/// A cookie of the mesh's (the mesh cookie, the DBSC ticket) with the mesh cookie's attributes.
pub fn named_cookie(name: &str, cfg: &CookieConfig, value: &str, max_age_s: u64) -> String {
    let mut s = String::with_capacity(name.len() + value.len() + 80);
    s.push_str(name);
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

/// An upstream `Set-Cookie` as app-cookie binding reads it: `(name, value, deleting)`.
/// `deleting`: `Max-Age` of zero or less, or (without `Max-Age`, which wins) an `Expires` in
/// the past. `None` for a value without a name.
pub fn parse_app_cookie(value: &[u8], now: u64) -> Option<(&[u8], &[u8], bool)> {
    let mut parts = value.split(|&b| b == b';');
    let pair = parts.next()?;
    let eq = pair.iter().position(|&b| b == b'=')?;
    let name = trim(pair.get(..eq)?);
    let val = trim(pair.get(eq + 1..)?);
    if name.is_empty() {
        return None;
    }
    let (mut max_age, mut expires) = (None, None);
    for attr in parts {
        let (k, v) = match attr.iter().position(|&b| b == b'=') {
            Some(i) => (trim(attr.get(..i)?), trim(attr.get(i + 1..)?)),
            None => (trim(attr), &b""[..]),
        };
        if k.eq_ignore_ascii_case(b"max-age") {
            // Only `-?DIGIT+` counts (RFC 6265 5.2.2); anything else is ignored, as browsers do.
            let digits = v.strip_prefix(b"-").unwrap_or(v);
            if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
                max_age = Some(v.first() == Some(&b'-') || digits.iter().all(|&b| b == b'0'));
            }
        } else if k.eq_ignore_ascii_case(b"expires") {
            expires = http_date(v).map(|t| t <= now);
        }
    }
    Some((name, val, max_age.or(expires).unwrap_or(false)))
}

/// Seconds since the epoch of a cookie date (IMF-fixdate, RFC 850, asctime), read as
/// browsers do: a `hh:mm:ss` token, a day, a month name, a year (two digits: 70-99 are 19xx).
pub fn http_date(v: &[u8]) -> Option<u64> {
    let (mut day, mut month, mut year, mut time) = (None, None, None, None);
    for tok in v
        .split(|&b| matches!(b, b' ' | b',' | b'-' | b'\t'))
        .filter(|t| !t.is_empty())
    {
        if tok.contains(&b':') && time.is_none() {
            time = hms(tok);
        } else if let Some(m) = month_of(tok).filter(|_| month.is_none()) {
            month = Some(m);
        } else if let Some(n) = number(tok) {
            if tok.len() <= 2 && day.is_none() {
                day = Some(n);
            } else if year.is_none() {
                year = Some(if tok.len() <= 2 && n >= 70 {
                    1900 + n
                } else if tok.len() <= 2 {
                    2000 + n
                } else {
                    n
                });
            }
        }
    }
    let (d, m, y, t) = (day?, month?, year?, time?);
    if !(1..=31).contains(&d) || y < 1601 {
        return None;
    }
    days_from_civil(y, m, d)?
        .checked_mul(86_400)?
        .checked_add(t)
}

fn number(tok: &[u8]) -> Option<u64> {
    if tok.is_empty() || tok.len() > 4 || !tok.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(tok).ok()?.parse().ok()
}

fn hms(tok: &[u8]) -> Option<u64> {
    let mut it = tok.split(|&b| b == b':').map(number);
    let (h, m, s) = (it.next()??, it.next()??, it.next()??);
    (h < 24 && m < 60 && s < 61).then_some(h * 3600 + m * 60 + s)
}

fn month_of(tok: &[u8]) -> Option<u64> {
    const MONTHS: [&[u8]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let head = tok.get(..3)?;
    MONTHS
        .iter()
        .position(|m| head.eq_ignore_ascii_case(m))
        .map(|i| i as u64 + 1)
}

/// Days since 1970-01-01 (H. Hinnant's algorithm); `None` before the epoch.
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests;
