//! Properties: decoding arbitrary bytes never panics and never verifies; a minted value
//! (with a scope, a client fingerprint and app-cookie bindings taken from the input) with one
//! byte changed never verifies, and unchanged decodes to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use session_guard::config::{Key, Secret};
use session_guard::token::{decode, encode, scope_digest, ua_digest, Session, SessionId};

fuzz_target!(|data: &[u8]| {
    let key = Key::new("k1", Secret::new(vec![42; 32]));
    assert!(decode(data, b"__Host-session", &[key.clone()]).is_err());
    if data.len() >= 3 {
        let mut s = Session::new(SessionId([data[0]; 16]), u64::from(data[1]) * 1000, None);
        s.scope = scope_digest(data);
        s.client = s.id.client_fingerprint(&ua_digest(data));
        for chunk in data.chunks(7).take(usize::from(data[1] % 12)) {
            s.bind(s.id.binding(chunk, data));
        }
        let Some(v) = encode(&s, "__Host-session", &key) else { return };
        assert_eq!(decode(v.as_bytes(), b"__Host-session", &[key.clone()]).as_ref(), Ok(&s));
        let mut t = v.into_bytes();
        let i = usize::from(data[2]) % t.len();
        t[i] ^= data.get(3).copied().filter(|&x| x != 0).unwrap_or(1);
        assert!(decode(&t, b"__Host-session", &[key]).is_err());
    }
});
