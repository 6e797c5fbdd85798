//! The session payload parser (what follows a verified MAC: times, ID, scope, client,
//! app-cookie bindings, subject). Properties: any bytes give a session or a refusal, never a
//! panic; a parsed session has at most 8 bindings and a valid subject, and signing it again
//! gives a value that decodes to the same session.
#![no_main]
use libfuzzer_sys::fuzz_target;
use session_guard::config::{Key, Secret};
use session_guard::token::{decode, encode, parse_payload, valid_subject, MAX_BINDINGS};

fuzz_target!(|data: &[u8]| {
    let legacy = data.first().is_some_and(|b| b & 1 == 1);
    let Ok(s) = parse_payload(data.get(1..).unwrap_or(&[]), legacy) else {
        return;
    };
    assert!(s.bindings.len() <= MAX_BINDINGS);
    assert!(s.subject.as_deref().is_none_or(|x| valid_subject(x.as_bytes())));
    assert!(s.last_used >= s.issued_at);
    let key = Key::new("k1", Secret::new(vec![42; 32]));
    if let Some(v) = encode(&s, "__Host-session", &key) {
        let mut back = decode(v.as_bytes(), b"__Host-session", &[key]).expect("own value verifies");
        back.legacy = s.legacy;
        if s.legacy {
            assert_eq!((back.id, back.subject.clone()), (s.id, s.subject.clone()));
        } else {
            assert_eq!(back, s);
        }
    }
});
