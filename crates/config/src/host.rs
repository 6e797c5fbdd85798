//! The request's host as `cookie.scope: "host"` and `cookie.legacy_hosts` read it: here,
//! because the configuration normalizes `cookie.legacy_hosts` the same way.

/// A host as `cookie.scope: "host"` reads `:authority`: the host Envoy routes on, lowercased
/// (Envoy matches domains case-insensitively), without a final `:<digits>` port
/// (`Tenant-A.example.com:8443` -> `tenant-a.example.com`; for an IPv6 literal only after
/// its `]`). Nothing else is removed: `a.example:.b.example` and `a.example:443.b.example` are
/// hosts under `b.example` to Envoy's wildcard domains, and `a.example.` (a trailing dot) is
/// not `a.example` to Envoy's exact domains, so each is a scope of its own. Envoy's
/// `strip_trailing_host_dot` and `strip_*_host_port` rewrite `:authority` before any HTTP
/// filter runs, so with them the filter reads the host already as Envoy routes it.
pub fn host_scope(authority: &[u8]) -> Vec<u8> {
    let host = match authority.iter().rposition(|&b| b == b':') {
        Some(i) => {
            let port = authority.get(i + 1..).unwrap_or_default();
            let host = authority.get(..i).unwrap_or_default();
            let bracketed = !authority.starts_with(b"[") || host.ends_with(b"]");
            if !port.is_empty() && port.iter().all(u8::is_ascii_digit) && bracketed {
                host
            } else {
                authority
            }
        }
        None => authority,
    };
    host.to_ascii_lowercase()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hosts_as_envoy_routes_them() {
        for (a, want) in [
            ("tenant-a.example.com", "tenant-a.example.com"),
            ("Tenant-A.Example.COM:8443", "tenant-a.example.com"),
            ("tenant-a.example.com:443", "tenant-a.example.com"),
            // A trailing dot is another host to Envoy's exact domains (and to browsers).
            ("tenant-a.example.com.", "tenant-a.example.com."),
            ("tenant-a.example.com.:443", "tenant-a.example.com."),
            // What Envoy's wildcard `*.b.example` routes to tenant B is never tenant A's scope.
            ("a.example:.b.example", "a.example:.b.example"),
            ("a.example:443.b.example", "a.example:443.b.example"),
            ("a.example:443.b.example:443", "a.example:443.b.example"),
            ("a.example:", "a.example:"),
            ("a.example:44x", "a.example:44x"),
            ("a.example::443", "a.example:"),
            ("[::1]:8080", "[::1]"),
            ("[::1]", "[::1]"),
            ("[::1]x:80", "[::1]x:80"),
            ("[::1", "[::1"),
            ("[::1:80", "[::1:80"),
            ("127.0.0.1:10000", "127.0.0.1"),
            (":443", ""),
            ("", ""),
        ] {
            assert_eq!(
                String::from_utf8(host_scope(a.as_bytes())).unwrap(),
                want,
                "{a}"
            );
        }
    }
}
