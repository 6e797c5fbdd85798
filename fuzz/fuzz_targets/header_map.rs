//! The header-map wire format, read in place (what every request's headers go through):
//! never a panic, never a pair outside the buffer, and a map we serialize reads back the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use session_guard::wire::{serialize_map, HeaderMap};

fuzz_target!(|data: &[u8]| {
    let map = HeaderMap::from_wire(data.to_vec());
    let mut total = 0usize;
    for (name, value) in map.iter() {
        total += name.len() + value.len() + 2;
    }
    assert!(total <= data.len());
    // Round trip: the bytes split as header pairs at NULs, serialized, read back unchanged.
    let pairs: Vec<(&str, String)> = data
        .split(|&b| b == 0)
        .filter_map(|p| std::str::from_utf8(p).ok())
        .map(|s| {
            let mid = (0..=s.len() / 2).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
            s.split_at(mid)
        })
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    let back: Vec<(String, String)> = HeaderMap::from_wire(serialize_map(&pairs))
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    let want: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    assert_eq!(back, want);
});
