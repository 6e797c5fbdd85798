//! The request's host as `cookie.scope: "host"` and `cookie.legacy_hosts` read it: here,
//! because the configuration normalizes `cookie.legacy_hosts` the same way.

/// A host as `cookie.scope: "host"` reads `:authority`: lowercased, without the port and
/// without one trailing dot (`Tenant-A.example.com.:8443` -> `tenant-a.example.com`). An
/// IPv6 literal keeps its brackets.
pub fn host_scope(authority: &[u8]) -> Vec<u8> {
    let host = if authority.starts_with(b"[") {
        let end = authority
            .iter()
            .position(|&b| b == b']')
            .map_or(authority.len(), |i| i + 1);
        authority.get(..end).unwrap_or(authority)
    } else {
        match authority.iter().rposition(|&b| b == b':') {
            Some(i) => authority.get(..i).unwrap_or(authority),
            None => authority,
        }
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
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
            ("tenant-a.example.com.", "tenant-a.example.com"),
            ("tenant-a.example.com.:443", "tenant-a.example.com"),
            ("[::1]:8080", "[::1]"),
            ("127.0.0.1:10000", "127.0.0.1"),
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
