//! Properties: the output never contains a listed parameter; stripping twice equals
//! stripping once; the output is the input with whole parameters removed (a subsequence);
//! stripping never creates an empty (non-final) or `.`/`..` segment unless it says the request
//! must be refused (`unsafe_path`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use session_guard::url::oracle::creates_dot_or_empty;
use session_guard::url::{strip_path, strip_referer};

fn params() -> Vec<String> {
    ["jsessionid", "phpsessid", "sessionid", "__host-session", "a"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn is_subsequence(small: &[u8], big: &[u8]) -> bool {
    let mut it = big.iter();
    small.iter().all(|b| it.any(|c| c == b))
}

fuzz_target!(|data: &[u8]| {
    let params = params();
    match strip_path(data, &params) {
        None => {}
        Some(s) => {
            assert!(s.removed > 0);
            assert!(s.value.len() < data.len());
            // A path of cookieless segments only becomes `/` (one byte that may not be in it).
            assert!(
                is_subsequence(&s.value, data) || s.value.starts_with(b"/"),
                "only whole parameters are removed"
            );
            if !s.unsafe_path {
                assert!(strip_path(&s.value, &params).is_none(), "twice == once");
                assert!(
                    !creates_dot_or_empty(data, &s.value),
                    "stripping created an empty or dot segment without refusing"
                );
            }
        }
    }
    if let Some(s) = strip_referer(data, &params, true) {
        assert!(strip_referer(&s.value, &params, true).is_none(), "referer: twice == once");
    }
});
