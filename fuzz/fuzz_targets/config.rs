//! Properties: any bytes give a config or a field-naming error, never a panic, and an
//! error never quotes the secret given.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match session_guard::config::parse(data, &|_| Some("c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=".into())) {
        Ok(c) => assert!(!c.keys.is_empty()),
        Err(e) => {
            assert!(!e.field.is_empty());
            assert!(!e.to_string().contains("c2VjcmV0c2VjcmV0"));
        }
    }
});
