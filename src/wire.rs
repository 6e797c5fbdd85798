//! The proxy-wasm header map wire format, read and written without panicking whatever the
//! bytes (the host builds it, but a malformed map must end early, not trap).

/// One header: the name as text (lossy for the impossible non-UTF-8 case), the value as bytes.
pub type Header = (String, Vec<u8>);

/// The proxy-wasm map wire format: u32 count, then (u32 key len, u32 value len) pairs, then
/// each key and value followed by a NUL. Malformed input ends the map early; never panics.
pub fn deserialize_map(bytes: &[u8]) -> Vec<Header> {
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let Some(count) = u32_at(0) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(count.min(1024));
    let Some(mut p) = count.checked_mul(8).and_then(|n| n.checked_add(4)) else {
        return out;
    };
    for n in 0..count {
        let s = 4 + n * 8;
        let (Some(klen), Some(vlen)) = (u32_at(s), u32_at(s + 4)) else {
            break;
        };
        let key = p.checked_add(klen).and_then(|end| bytes.get(p..end));
        let vstart = p.saturating_add(klen).saturating_add(1);
        let value = vstart
            .checked_add(vlen)
            .and_then(|end| bytes.get(vstart..end));
        let (Some(key), Some(value)) = (key, value) else {
            break;
        };
        out.push((String::from_utf8_lossy(key).into_owned(), value.to_vec()));
        p = vstart.saturating_add(vlen).saturating_add(1);
    }
    out
}

pub fn serialize_map(headers: &[(&str, String)]) -> Vec<u8> {
    let len32 = |n: usize| u32::try_from(n).unwrap_or(0).to_le_bytes();
    let mut out = Vec::with_capacity(
        4 + headers
            .iter()
            .map(|(k, v)| 10 + k.len() + v.len())
            .sum::<usize>(),
    );
    out.extend_from_slice(&len32(headers.len()));
    for (k, v) in headers {
        out.extend_from_slice(&len32(k.len()));
        out.extend_from_slice(&len32(v.len()));
    }
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_and_keeps_raw_values() {
        let headers = vec![
            (":path", "/a?b".to_string()),
            ("cookie", "x=1".to_string()),
            ("empty", String::new()),
        ];
        let got = deserialize_map(&serialize_map(&headers));
        let want: Vec<Header> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(got, want);
        let mut raw = serialize_map(&[("x", "ab".to_string())]);
        let at = raw.len() - 3;
        raw[at] = 0xff; // a value byte the host may deliver
        assert_eq!(
            deserialize_map(&raw),
            vec![("x".to_string(), vec![0xff, b'b'])]
        );
    }

    #[test]
    fn malformed_maps_end_early() {
        assert!(deserialize_map(&[]).is_empty());
        assert!(deserialize_map(&[1, 0]).is_empty());
        assert!(deserialize_map(&[0xff, 0xff, 0xff, 0xff]).is_empty());
        let mut raw = serialize_map(&[("a", "1".to_string()), ("b", "2".to_string())]);
        raw.truncate(raw.len() - 3);
        assert_eq!(deserialize_map(&raw).len(), 1);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = deserialize_map(&bytes);
        }
    }
}
