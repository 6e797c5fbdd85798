//! Properties: hardening never panics, is idempotent, and only appends.
#![no_main]
use libfuzzer_sys::fuzz_target;
use session_guard::set_cookie::{cache_control_with_cookie, harden, Upstream};

fuzz_target!(|data: &[u8]| {
    let names = vec!["jsessionid".to_string(), "__host-session".to_string()];
    if let Upstream::Harden(v) = harden(data, b"__Host-session", &names, true) {
        assert_eq!(harden(&v, b"__Host-session", &names, true), Upstream::Keep, "idempotent");
    }
    if let Some(cc) = cache_control_with_cookie(Some(data)) {
        assert_eq!(cache_control_with_cookie(Some(&cc)), None, "idempotent");
    }
});
