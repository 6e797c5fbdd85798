//! The logout denylist's storage format, pure: which sessions ended by a `logout` signal are
//! refused by this proxy (every worker) until their absolute expiry.
//!
//! The list lives in Proxy-Wasm shared data (one store per Envoy process and VM id, shared by
//! every worker, kept across configuration pushes), split into [`BUCKETS`] keys by the first
//! byte of the session's hash so that a lookup copies one small value. A bucket's value is a
//! run of 16-byte entries: the session's 8-byte hash, then its absolute expiry (unix seconds,
//! big-endian). Expired entries are dropped whenever a bucket is written. Bounded: at most
//! [`BUCKET_ENTRIES`] entries per bucket, [`CAPACITY`] in all, at most 64 KiB of values.
//! Here, in the configuration crate (optimized for size), because it is cold code: a lookup
//! runs only for a valid session, and is one scan of at most 256 bytes.

/// Shared-data keys: `session_guard.logout.00` .. `session_guard.logout.ff`.
pub const BUCKETS: usize = 256;
/// Entries per bucket.
pub const BUCKET_ENTRIES: usize = 16;
/// Sessions the denylist holds at most (4096).
pub const CAPACITY: usize = BUCKETS * BUCKET_ENTRIES;
const ENTRY: usize = 16;

/// The shared-data key of the bucket holding `hash` (ASCII bytes: no formatting machinery).
pub fn bucket_key(hash: &[u8; 8]) -> [u8; 23] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b = usize::from(hash.first().copied().unwrap_or_default());
    let mut key = *b"session_guard.logout.00";
    let [.., hi, lo] = &mut key;
    {
        *hi = HEX.get(b >> 4).copied().unwrap_or(b'0');
        *lo = HEX.get(b & 0xf).copied().unwrap_or(b'0');
    }
    key
}

/// An entry's hash and expiry.
fn entry(e: &[u8]) -> (&[u8], u64) {
    let expiry = e
        .get(8..)
        .and_then(|x| x.try_into().ok())
        .unwrap_or_default();
    (e.get(..8).unwrap_or_default(), u64::from_be_bytes(expiry))
}

/// Whether the bucket lists `hash` as ended and not yet expired at `now`.
pub fn contains(bucket: &[u8], hash: &[u8; 8], now: u64) -> bool {
    bucket
        .chunks_exact(ENTRY)
        .map(entry)
        .any(|(h, expiry)| h == hash && now < expiry)
}

/// What recording a logout does to a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    /// Write this value (expired entries dropped, the session added).
    Write(Vec<u8>),
    /// Already listed: nothing to write.
    Present,
    /// The bucket holds [`BUCKET_ENTRIES`] unexpired sessions: this one is not recorded.
    Full,
}

/// Adds `hash` (ended, refused until `expiry`) to `bucket` at `now`.
pub fn insert(bucket: &[u8], hash: &[u8; 8], expiry: u64, now: u64) -> Insert {
    let mut out = Vec::with_capacity(bucket.len() + ENTRY);
    for e in bucket.chunks_exact(ENTRY) {
        let (h, until) = entry(e);
        if now >= until {
            continue;
        }
        if h == hash {
            return Insert::Present;
        }
        out.extend_from_slice(e);
    }
    if out.len() >= BUCKET_ENTRIES * ENTRY {
        return Insert::Full;
    }
    out.extend_from_slice(hash);
    out.extend_from_slice(&expiry.to_be_bytes());
    Insert::Write(out)
}

/// What recording a logout did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Listed (now or already).
    Yes,
    /// Its bucket is full: not recorded.
    Full,
    /// The store refused the write twice (lost races, or shared data unavailable).
    Failed,
}

/// Records `hash` (ended, refused until `expiry`) with read-modify-write on its bucket: `get`
/// reads the bucket and its CAS token, `set` writes if the token still holds. A write that
/// loses a race with another worker is tried once more. Closures, so that this cold code stays
/// here (optimized for size) while the host calls stay in the filter.
pub fn record(
    get: &dyn Fn() -> Option<(Vec<u8>, u32)>,
    set: &dyn Fn(&[u8], u32) -> bool,
    hash: &[u8; 8],
    expiry: u64,
    now: u64,
) -> Recorded {
    for _ in 0..2 {
        let (bucket, cas) = get().unwrap_or_default();
        match insert(&bucket, hash, expiry, now) {
            Insert::Present => return Recorded::Yes,
            Insert::Full => return Recorded::Full,
            Insert::Write(v) if set(&v, cas) => return Recorded::Yes,
            Insert::Write(_) => {}
        }
    }
    Recorded::Failed
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn h(first: u8, n: u8) -> [u8; 8] {
        [first, n, 0, 0, 0, 0, 0, 1]
    }

    #[test]
    fn keys_spread_by_the_first_byte() {
        assert_eq!(&bucket_key(&h(0, 1)), b"session_guard.logout.00");
        assert_eq!(&bucket_key(&h(0xab, 1)), b"session_guard.logout.ab");
    }

    #[test]
    fn entries_last_until_their_expiry_and_buckets_are_bounded() {
        let Insert::Write(b) = insert(b"", &h(1, 1), 100, 10) else {
            unreachable!()
        };
        assert_eq!(b.len(), 16);
        assert!(contains(&b, &h(1, 1), 99));
        assert!(!contains(&b, &h(1, 1), 100), "gone at its absolute expiry");
        assert!(!contains(&b, &h(1, 2), 10));
        assert_eq!(insert(&b, &h(1, 1), 100, 10), Insert::Present);
        // Fill the bucket: the next one is refused, until an entry expires.
        let mut b = b;
        for n in 2..=BUCKET_ENTRIES as u8 {
            let Insert::Write(next) = insert(&b, &h(1, n), 100 + u64::from(n), 10) else {
                unreachable!()
            };
            b = next;
        }
        assert_eq!(b.len(), BUCKET_ENTRIES * 16);
        assert_eq!(insert(&b, &h(1, 99), 500, 10), Insert::Full);
        let Insert::Write(pruned) = insert(&b, &h(1, 99), 500, 100) else {
            unreachable!()
        };
        assert_eq!(
            pruned.len(),
            BUCKET_ENTRIES * 16,
            "the expired entry made room"
        );
        assert!(!contains(&pruned, &h(1, 1), 50) && contains(&pruned, &h(1, 99), 100));
        // Garbage (a partial entry) is never read as a session.
        assert!(!contains(&[1, 1, 0], &h(1, 1), 0));
        assert_eq!(CAPACITY, 4096);
    }

    #[test]
    fn record_retries_a_lost_race_once() {
        use std::cell::RefCell;
        let store = RefCell::new((Vec::new(), 1u32));
        let races = RefCell::new(1);
        let get = || Some(store.borrow().clone());
        let set = |v: &[u8], cas: u32| {
            if *races.borrow() > 0 {
                *races.borrow_mut() -= 1;
                store.borrow_mut().1 += 1; // another worker wrote first
                return false;
            }
            let ok = store.borrow().1 == cas;
            if ok {
                *store.borrow_mut() = (v.to_vec(), cas + 1);
            }
            ok
        };
        assert_eq!(record(&get, &set, &h(2, 1), 100, 10), Recorded::Yes);
        assert!(contains(&store.borrow().0, &h(2, 1), 50));
        assert_eq!(record(&get, &set, &h(2, 1), 100, 10), Recorded::Yes);
        *races.borrow_mut() = 2;
        assert_eq!(record(&get, &set, &h(2, 2), 100, 10), Recorded::Failed);
    }
}
