//! Properties: the output never contains a listed parameter; stripping twice equals
//! stripping once; the output is the input with whole parameters removed (a subsequence);
//! stripping never creates an empty (non-final) or `.`/`..` segment unless it says the request
//! must be refused (`unsafe_path`).
#![no_main]
use libfuzzer_sys::fuzz_target;
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

fn path_part(v: &[u8]) -> &[u8] {
    let end = v.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(v.len());
    v.get(..end).unwrap_or(v)
}

/// Stated independently of the filter's code: segments split on `/`, `\`, `%2F`, `%5C`,
/// `%2e` decoded, each up to its first `;`.
fn creates_dot_or_empty(input: &[u8], output: &[u8]) -> bool {
    let (pi, po) = (path_part(input), path_part(output));
    if pi == po {
        return false;
    }
    let empties = |p: &[u8]| {
        let segs: Vec<&[u8]> = p.split(|&b| b == b'/').collect();
        segs.iter().take(segs.len().saturating_sub(1)).filter(|s| s.is_empty()).count()
    };
    let norm = String::from_utf8_lossy(po)
        .replace("%2f", "/")
        .replace("%2F", "/")
        .replace("%5c", "/")
        .replace("%5C", "/")
        .replace('\\', "/")
        .replace("%2e", ".")
        .replace("%2E", ".");
    let dots = norm.split('/').any(|seg| {
        let base = seg.split(';').next().unwrap_or("");
        base == "." || base == ".."
    });
    dots || empties(po) > empties(pi)
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
