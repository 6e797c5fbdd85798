//! Envoy's access log as the shipped configurations write it (stdout, which the harness
//! captures in the Envoy's `stderr.log`), parsed into [`AccessLine`]s, and the session hash
//! that names a session in it and in the filter's log lines.

use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::{lossy, Envoy, POLL};

/// What the shipped access log format says about one request.
#[derive(Clone, Debug)]
pub struct AccessLine {
    pub status: u16,
    pub request_id: String,
    /// `session=`: the hash of the session the request ends with, `-` if none.
    pub session: String,
    /// `decision=`: the filter's one-word decision.
    pub decision: String,
    pub raw: String,
}

/// The session hash of a session ID as upstreams receive it (`x-session-id`, base64url without
/// padding): the first 8 bytes of SHA-256("session-guard session tag" || the 16-byte ID), in
/// lowercase hex. Unkeyed, so it names the session across key rotations.
pub fn session_hash(session_id: &str) -> String {
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(session_id)
        .unwrap_or_else(|e| panic!("x-session-id is not base64url: {e}"));
    assert_eq!(id.len(), 16, "a session ID is 16 bytes");
    let digest = Sha256::new()
        .chain_update(b"session-guard session tag")
        .chain_update(&id)
        .finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The value of ` key=` in `line` (up to the next space).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!(" {key}=");
    let start = line.find(&needle)? + needle.len();
    line[start..].split_whitespace().next()
}

/// One line of the shipped format, `None` for any other line.
pub fn parse_access_line(line: &str) -> Option<AccessLine> {
    let after_request = line.split_once("\" ")?.1;
    let status = after_request.split_whitespace().next()?.parse().ok()?;
    Some(AccessLine {
        status,
        request_id: field(line, "request_id")?.to_owned(),
        session: field(line, "session")?.to_owned(),
        decision: field(line, "decision")?.to_owned(),
        raw: line.to_owned(),
    })
}

/// Every access log line Envoy wrote so far, in order.
pub fn access_lines(envoy: &Envoy) -> Vec<AccessLine> {
    let text = std::fs::read(envoy.dir().join("stderr.log"))
        .map(|b| lossy(&b))
        .unwrap_or_default();
    text.lines().filter_map(parse_access_line).collect()
}

/// Polls until Envoy has written the access log line of `request_id` (the log is flushed every
/// 20 ms); panics after 5 s.
pub async fn access_line(envoy: &Envoy, request_id: &str) -> AccessLine {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(l) = access_lines(envoy)
            .into_iter()
            .find(|l| l.request_id == request_id)
        {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no access log line for request_id={request_id}; have:\n{}",
            access_lines(envoy)
                .iter()
                .map(|l| l.raw.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Polls until Envoy has written at least `n` access log lines; returns them all.
pub async fn wait_access_lines(envoy: &Envoy, n: usize) -> Vec<AccessLine> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines = access_lines(envoy);
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} access log lines, expected {n}",
            lines.len()
        );
        tokio::time::sleep(POLL).await;
    }
}
