//! Properties: decoding arbitrary bytes never panics and never verifies; a minted value
//! with one byte changed never verifies.
#![no_main]
use libfuzzer_sys::fuzz_target;
use session_guard::config::{Key, Secret};
use session_guard::token::{decode, encode, Session, SessionId};

fuzz_target!(|data: &[u8]| {
    let key = Key::new("k1", Secret::new(vec![42; 32]));
    assert!(decode(data, b"__Host-session", &[key.clone()]).is_err());
    if data.len() >= 3 {
        let s = Session::new(SessionId([data[0]; 16]), u64::from(data[1]) * 1000, None);
        let Some(v) = encode(&s, "__Host-session", &key) else { return };
        let mut t = v.into_bytes();
        let i = usize::from(data[2]) % t.len();
        t[i] ^= data.get(3).copied().filter(|&x| x != 0).unwrap_or(1);
        assert!(decode(&t, b"__Host-session", &[key]).is_err());
    }
});
