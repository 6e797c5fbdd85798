//! `cookie.scope`: what a session is valid for. A session carries the digest of its scope,
//! covered by its MAC; the validator compares it with the request's after the signature.

use crate::config::{Config, Scope};
use crate::token::{self, TAG_LEN};

pub use crate::config::host_scope;

/// The digest of the scope a request's session must carry.
pub fn request_scope(cfg: &Config, authority: Option<&[u8]>) -> [u8; TAG_LEN] {
    scope_for_host(cfg, &host_scope(authority.unwrap_or_default()))
}

/// [`request_scope`] for a host already read by [`host_scope`] (the request path reads it once).
pub fn scope_for_host(cfg: &Config, host: &[u8]) -> [u8; TAG_LEN] {
    match &cfg.scope {
        Scope::Host => token::scope_digest(host),
        Scope::Fixed(s) => token::scope_digest(s.as_bytes()),
        Scope::None => token::scope_digest(b""),
    }
}
