//! `cookie.scope`: what a session is valid for. A session carries the digest of its scope,
//! covered by its MAC; the validator compares it with the request's after the signature.

use crate::config::{Config, Scope};
use crate::token::{self, TAG_LEN};
use std::cell::RefCell;

pub use crate::config::host_scope;

/// The digest of the scope a request's session must carry.
pub fn request_scope(cfg: &Config, authority: Option<&[u8]>) -> [u8; TAG_LEN] {
    scope_for_host(cfg, &host_scope(authority.unwrap_or_default()))
}

/// [`request_scope`] for a host already read by [`host_scope`] (the request path reads it once).
pub fn scope_for_host(cfg: &Config, host: &[u8]) -> [u8; TAG_LEN] {
    match &cfg.scope {
        Scope::Host => digest_memo(host),
        Scope::Fixed(s) => digest_memo(s.as_bytes()),
        Scope::None => digest_memo(b""),
    }
}

thread_local! {
    /// The last scope digested, per VM (a Wasm VM has one thread): one SHA-256 block less per
    /// request while the requests are for one host, as behind a sidecar or a one-host gateway.
    static LAST: RefCell<Option<(Vec<u8>, [u8; TAG_LEN])>> = const { RefCell::new(None) };
}

/// [`token::scope_digest`], remembered for the last scope (a pure function, so a memo).
fn digest_memo(scope: &[u8]) -> [u8; TAG_LEN] {
    LAST.with(|last| {
        let Ok(mut last) = last.try_borrow_mut() else {
            return token::scope_digest(scope);
        };
        match last.as_ref() {
            Some((s, d)) if s.as_slice() == scope => *d,
            _ => {
                let d = token::scope_digest(scope);
                if scope.len() <= 256 {
                    *last = Some((scope.to_vec(), d));
                }
                d
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memo_answers_what_the_digest_does() {
        let long = vec![b'x'; 300];
        let hosts: [&[u8]; 7] = [
            b"a.example",
            b"a.example",
            b"b.example",
            b"",
            &long,
            &long,
            b"a.example",
        ];
        for host in hosts {
            assert_eq!(digest_memo(host), token::scope_digest(host));
        }
        assert_ne!(digest_memo(b"a.example"), digest_memo(b"b.example"));
    }
}
