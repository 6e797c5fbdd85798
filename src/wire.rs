//! The proxy-wasm header map wire format, read and written without panicking whatever the
//! bytes (the host builds it, but a malformed map must end early, not trap).

/// One header, owned (the in-memory hosts of tests and benchmarks keep their maps this way).
pub type Header = (String, Vec<u8>);

/// A header map as the host delivered it, in the proxy-wasm wire format: u32 count, then
/// (u32 key len, u32 value len) pairs, then each key and value followed by a NUL. Read in
/// place: [`HeaderMap::iter`] borrows names and values from the one buffer, so reading a map
/// costs no allocation per header.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeaderMap(Vec<u8>);

impl HeaderMap {
    pub fn from_wire(bytes: Vec<u8>) -> Self {
        HeaderMap(bytes)
    }

    pub fn from_headers(headers: &[Header]) -> Self {
        let pairs: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        HeaderMap(serialize_pairs(&pairs))
    }

    /// A map from borrowed pairs (the native host reads Envoy's header map this way).
    pub fn from_pairs(pairs: &[(&str, &[u8])]) -> Self {
        HeaderMap(serialize_pairs(pairs))
    }

    /// Every header in order. A name that is not UTF-8 (clients' codecs refuse them; another
    /// filter could add one) is skipped: it cannot equal any header the filter reads, which
    /// are all ASCII. A malformed map ends early; never panics.
    pub fn iter(&self) -> Pairs<'_> {
        let bytes = self.0.as_slice();
        let count = u32_at(bytes, 0).unwrap_or(0);
        let data = count.checked_mul(8).and_then(|n| n.checked_add(4));
        Pairs {
            bytes,
            count: if data.is_some() { count } else { 0 },
            n: 0,
            p: data.unwrap_or(usize::MAX),
        }
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(b)).ok()
}

/// The iterator of [`HeaderMap::iter`].
#[derive(Debug)]
pub struct Pairs<'a> {
    bytes: &'a [u8],
    count: usize,
    n: usize,
    /// Where the next key starts.
    p: usize,
}

impl<'a> Pairs<'a> {
    /// The next header, names not checked for UTF-8 yet; `None` at the end or when malformed.
    fn next_raw(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        if self.n >= self.count {
            return None;
        }
        let s = self.n.checked_mul(8)?.checked_add(4)?;
        let (klen, vlen) = (u32_at(self.bytes, s)?, u32_at(self.bytes, s + 4)?);
        let key = self.bytes.get(self.p..self.p.checked_add(klen)?)?;
        let vstart = self.p.checked_add(klen)?.checked_add(1)?;
        let value = self.bytes.get(vstart..vstart.checked_add(vlen)?)?;
        self.n += 1;
        self.p = vstart.checked_add(vlen)?.checked_add(1)?;
        Some((key, value))
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Some((key, value)) = self.next_raw() else {
                self.count = 0; // malformed or done: stay done
                return None;
            };
            if let Ok(name) = std::str::from_utf8(key) {
                return Some((name, value));
            }
        }
    }
}

pub fn serialize_map(headers: &[(&str, String)]) -> Vec<u8> {
    let pairs: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    serialize_pairs(&pairs)
}

fn serialize_pairs(headers: &[(&str, &[u8])]) -> Vec<u8> {
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
        out.extend_from_slice(v);
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

    /// The owned headers of a wire map.
    fn deserialize_map(bytes: &[u8]) -> Vec<Header> {
        HeaderMap::from_wire(bytes.to_vec())
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect()
    }

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

    #[test]
    fn a_name_that_is_not_utf8_is_skipped_and_the_rest_read() {
        let mut raw = serialize_map(&[("ab", "1".to_string()), ("cookie", "x=1".to_string())]);
        let at = 4 + 2 * 8; // the first key's bytes
        raw[at] = 0xff;
        assert_eq!(
            deserialize_map(&raw),
            vec![("cookie".to_string(), b"x=1".to_vec())]
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = deserialize_map(&bytes);
        }
    }
}
