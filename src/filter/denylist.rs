//! The logout denylist on the host's shared data (the format: `policy::denylist`). A session
//! ended by a trusted `logout` signal (or by conflicting signals, or a rotation that could not
//! happen) is recorded by its hash until its absolute expiry; every worker of the proxy then
//! refuses it (`session.invalid.revoked`, `logout.refused`). Only a request whose session is
//! otherwise valid pays the lookup: one shared-data read of one small bucket.

use crate::hostapi::Host;
use crate::metrics::Counter;
use crate::policy::denylist::{self, Recorded};

/// Whether this proxy's denylist holds the session `hash` at `now`.
pub(super) fn logged_out<H: Host>(host: &H, hash: &[u8; 8], now: u64) -> bool {
    host.shared_get(text(&key(hash)))
        .is_some_and(|(bucket, _)| denylist::contains(&bucket, hash, now))
}

fn key(hash: &[u8; 8]) -> [u8; 23] {
    denylist::bucket_key(hash)
}

fn text(key: &[u8; 23]) -> &str {
    std::str::from_utf8(key).unwrap_or_default()
}

/// Records the session `hash` as ended until `expiry`: the counter for what happened.
pub(super) fn record<H: Host>(host: &H, hash: &[u8; 8], expiry: u64, now: u64) -> Counter {
    let key = key(hash);
    let key = text(&key);
    let get = || host.shared_get(key);
    let set = |v: &[u8], cas: u32| host.shared_set(key, v, cas).is_ok();
    match denylist::record(&get, &set, hash, expiry, now) {
        Recorded::Yes => Counter::LogoutRecorded,
        Recorded::Full => Counter::LogoutDenylistFull,
        Recorded::Failed => Counter::InternalError,
    }
}
