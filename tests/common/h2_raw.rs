//! [`raw_h2`]: one hand-written HTTP/2 request, for a `:path` no HTTP library will send.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{lossy, within, REQUEST_TIMEOUT};

/// Sends one HTTP/2 (h2c prior knowledge) request whose `:path` is arbitrary bytes and returns
/// the response status, or `Err` with what happened instead (stream reset, GOAWAY, close).
///
/// Why this exists: Envoy 1.40's HTTP/1 codec answers 400 to any byte 0x80-0xFF in the
/// request-target, but its HTTP/2 codec forwards such a `:path` byte for byte (valid UTF-8 or
/// not) — so HTTP/2 is how hostile paths reach the filter, and hyper's client cannot send
/// them (`http::Uri`). Hand-written frames: HPACK literals without Huffman coding; of the
/// response only `:status` is decoded (static-table index or a literal, Huffman digits
/// included). `headers` are extra (lowercase name, value) pairs.
pub async fn raw_h2(
    port: u16,
    method: &str,
    path: &[u8],
    headers: &[(&str, &[u8])],
) -> Result<u16, String> {
    let out = h2_request(method, path, headers);
    let work = async move {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .write_all(&out)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut head = [0u8; 9];
        loop {
            stream
                .read_exact(&mut head)
                .await
                .map_err(|e| format!("connection closed before a response: {e}"))?;
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let (kind, flags) = (head[3], head[4]);
            let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            stream
                .read_exact(&mut payload)
                .await
                .map_err(|e| format!("truncated frame: {e}"))?;
            match (kind, id) {
                (0x1, 1) => return h2_status(&payload, flags),
                (0x3, 1) => return Err(format!("stream reset (RST_STREAM {payload:02x?})")),
                (0x7, _) => return Err(format!("GOAWAY {payload:02x?}")),
                _ => {}
            }
        }
    };
    within(REQUEST_TIMEOUT, work).await?
}

/// The client's bytes: the connection preface, SETTINGS, and one HEADERS frame (stream 1,
/// END_STREAM) carrying the request as HPACK literals.
fn h2_request(method: &str, path: &[u8], headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut block = Vec::new();
    let pseudo: [(&str, &[u8]); 4] = [
        (":method", method.as_bytes()),
        (":scheme", b"http"),
        (":authority", b"localhost"),
        (":path", path),
    ];
    for (name, value) in pseudo.iter().chain(headers) {
        // Literal header field without indexing, new name (RFC 7541 §6.2.2).
        block.push(0);
        hpack_int(&mut block, 0, 7, name.len());
        block.extend_from_slice(name.as_bytes());
        hpack_int(&mut block, 0, 7, value.len());
        block.extend_from_slice(value);
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    out.extend(frame(0x1, 0x4 | 0x1, 1, &block)); // HEADERS, END_HEADERS | END_STREAM
    out
}

/// One HTTP/2 frame (RFC 9113 §4.1).
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("frame size");
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with a `prefix_bits`-bit prefix (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, prefix_bits: u32, mut v: usize) {
    let max = (1usize << prefix_bits) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// `:status` from the first field of a response HEADERS frame payload.
fn h2_status(payload: &[u8], flags: u8) -> Result<u16, String> {
    let mut p = payload;
    if flags & 0x8 != 0 {
        let pad = usize::from(*p.first().ok_or("empty padded frame")?);
        p = p.get(1..p.len().saturating_sub(pad)).ok_or("bad padding")?;
    }
    if flags & 0x20 != 0 {
        p = p.get(5..).ok_or("bad priority")?;
    }
    while p.first().is_some_and(|b| b & 0xe0 == 0x20) {
        // Dynamic table size update: skip its integer.
        let n = 1 + p.iter().skip(1).take_while(|b| *b & 0x80 != 0).count();
        p = p
            .get(n + usize::from(p[0] & 0x1f == 0x1f)..)
            .unwrap_or_default();
    }
    let first = *p.first().ok_or("empty header block")?;
    const STATIC: [u16; 7] = [200, 204, 206, 304, 400, 404, 500]; // static indices 8..=14
    let static_status = |i: u8| STATIC.get(usize::from(i).wrapping_sub(8)).copied();
    if first & 0x80 != 0 {
        return static_status(first & 0x7f).ok_or_else(|| format!("first field {first:#x}"));
    }
    let name_index = if first & 0x40 != 0 {
        first & 0x3f
    } else {
        first & 0x0f
    };
    static_status(name_index).ok_or_else(|| format!("first field is not :status ({first:#x})"))?;
    let len_byte = *p.get(1).ok_or("no :status value")?;
    let value = p
        .get(2..2 + usize::from(len_byte & 0x7f))
        .ok_or("short :status value")?;
    let text = if len_byte & 0x80 == 0 {
        lossy(value)
    } else {
        huffman_digits(value)
    };
    text.parse().map_err(|_| format!(":status {text:?}"))
}

/// Decodes an HPACK-Huffman string made of digits (all a `:status` can hold): `0`-`2` are the
/// 5-bit codes 0-2, `3`-`9` the 6-bit codes 0x19-0x1f; trailing 1-bits are padding.
fn huffman_digits(bytes: &[u8]) -> String {
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let mut out = String::new();
    let mut i = 0;
    let take = |i: usize, n: usize| {
        bits.get(i..i + n)
            .map(|s| s.iter().fold(0u8, |a, b| a << 1 | b))
    };
    while let Some(five) = take(i, 5) {
        match five {
            0..=2 => {
                out.push(char::from(b'0' + five));
                i += 5;
            }
            _ => match take(i, 6) {
                Some(six @ 0x19..=0x1f) => {
                    out.push(char::from(b'3' + six - 0x19));
                    i += 6;
                }
                _ => break,
            },
        }
    }
    out
}
