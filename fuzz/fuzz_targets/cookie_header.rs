//! Properties: finding never panics; the rewrite never keeps a mesh cookie and keeps every
//! other byte in order.
#![no_main]
use libfuzzer_sys::fuzz_target;
use session_guard::cookies::{find, without_mesh_cookie, Rewrite};

const NAME: &[u8] = b"__Host-session";

fuzz_target!(|data: &[u8]| {
    let headers: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let found = find(&headers, NAME);
    let mut total = 0;
    for h in &headers {
        match without_mesh_cookie(h, NAME) {
            Rewrite::Keep => {}
            Rewrite::Drop => total += 1,
            Rewrite::Replace(v) => {
                total += 1;
                assert_eq!(find(&[&v], NAME).count, 0);
                let mut it = h.iter();
                assert!(v.iter().all(|b| it.any(|c| c == b)), "bytes kept in order");
            }
        }
    }
    assert_eq!(found.count > 0, total > 0);
});
