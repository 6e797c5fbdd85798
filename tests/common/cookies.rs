//! Reading `Set-Cookie` lines and writing `Cookie` headers.

use super::Resp;

/// The whole `Set-Cookie` line that sets cookie `name`, if any (the first one).
pub fn set_cookie(resp: &Resp, name: &str) -> Option<String> {
    set_cookies(resp, name).into_iter().next()
}

/// Every `Set-Cookie` line for cookie `name`, in order.
pub fn set_cookies(resp: &Resp, name: &str) -> Vec<String> {
    resp.header_all("set-cookie")
        .into_iter()
        .filter(|line| cookie_name(line) == name)
        .collect()
}

/// The value that `Set-Cookie` gives cookie `name` (the text between `=` and the first `;`).
pub fn set_cookie_value(resp: &Resp, name: &str) -> Option<String> {
    set_cookie(resp, name).map(|line| {
        let pair = line.split(';').next().unwrap_or_default();
        pair.split_once('=')
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    })
}

/// The attribute `attr` of a `Set-Cookie` line, case-insensitive: `Some("")` for a flag like
/// `HttpOnly`, `Some("Lax")` for `SameSite=Lax`, `None` when absent.
pub fn cookie_attr(set_cookie_line: &str, attr: &str) -> Option<String> {
    set_cookie_line.split(';').skip(1).find_map(|part| {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        k.trim()
            .eq_ignore_ascii_case(attr)
            .then(|| v.trim().to_owned())
    })
}

/// A `Cookie` request header value from pairs: `[("a", "1"), ("b", "2")]` → `a=1; b=2`.
pub fn cookie_header(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn cookie_name(set_cookie_line: &str) -> &str {
    set_cookie_line
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .map(|(k, _)| k.trim())
        .unwrap_or_default()
}
