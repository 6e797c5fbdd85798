//! End-to-end harness: a real Envoy running the shipped configuration with the built filter,
//! recording upstreams and byte-exact clients. Every e2e test file uses it with `mod common;`.
//!
//! ```ignore
//! let app = Upstream::start().await;
//! let envoy = EnvoyBuilder::shipped("envoy/sidecar.yaml").upstream("app", &app).start().await;
//! let resp = send(envoy.port(), Req::get("/a;jsessionid=1?x=%zz&b")).await;
//! assert_eq!(app.last().expect("forwarded").path, b"/a?x=%zz&b");
//! ```
//!
//! - [`Upstream`]: an HTTP/1.1 server (hyper) on a free port that records every request byte for
//!   byte (request-target, headers in wire order with duplicates, body, trailers) and answers
//!   with a scripted [`Reply`].
//! - [`EnvoyBuilder`]: takes a shipped config (`envoy/*.yaml`), substitutes ports, the wasm path,
//!   and optionally the filter's configuration *structurally* (parsed YAML, never text
//!   replacement), writes it into a fresh temp dir and starts Envoy. [`Envoy`] kills the
//!   process and removes the dir on drop, also when the test panics (and then prints the log
//!   tail, so a failing test shows what Envoy said).
//! - [`send`] / [`send_h2`]: one request on a fresh HTTP/1.1 or h2c connection (hyper's client
//!   connection API, so the request-target goes out exactly as given). [`raw_http1`] and
//!   [`raw_h2`] for request-targets that `http::Uri` refuses (bytes 0x80-0xFF: Envoy answers
//!   400 to them over HTTP/1.1 and forwards them over HTTP/2).
//!
//! Environment: `ENVOY_BIN` (default `<repo>/.venv/bin/envoy`) and `SESSION_GUARD_WASM`
//! (default `<repo>/target/wasm32-wasip1/release/session_guard.wasm`); the Makefile exports both.
//! Everything binds port 0 and uses its own temp dir, so tests in one binary run in parallel.
#![allow(
    dead_code, // each test binary uses a different part of the harness
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_yaml::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::task::{JoinHandle, JoinSet};

/// Base64 of the 32 bytes `session-guard-test-key-012345678`: the `SESSION_GUARD_KEY` every
/// Envoy gets unless the test sets another with [`EnvoyBuilder::env`].
pub const TEST_KEY: &str = "c2Vzc2lvbi1ndWFyZC10ZXN0LWtleS0wMTIzNDU2Nzg=";

/// How long Envoy may take to become ready, or to exit on a refused configuration.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one request (connect, send, full response) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval between polls while waiting for Envoy.
const POLL: Duration = Duration::from_millis(25);

// ---------------------------------------------------------------------------------------------
// Headers

/// Headers as (lowercase name, raw value bytes), in order, duplicates kept.
pub type Headers = Vec<(String, Vec<u8>)>;

fn find_all<'a>(headers: &'a Headers, name: &str) -> impl Iterator<Item = &'a [u8]> + 'a {
    let name = name.to_ascii_lowercase();
    headers
        .iter()
        .filter(move |(n, _)| *n == name)
        .map(|(_, v)| v.as_slice())
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn header_map_to_vec(map: &HeaderMap) -> Headers {
    map.iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

fn try_header(name: &str, value: &[u8]) -> Result<(HeaderName, HeaderValue), String> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|e| format!("invalid header name {name:?}: {e}"))?;
    let v = HeaderValue::from_bytes(value)
        .map_err(|e| format!("invalid value for header {name}: {:?}: {e}", lossy(value)))?;
    Ok((n, v))
}

fn to_header(name: &str, value: &[u8]) -> (HeaderName, HeaderValue) {
    try_header(name, value).unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------------------------
// Upstream

/// One request as an [`Upstream`] received it.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    pub method: String,
    /// The request-target exactly as received (Envoy sends origin-form: `:path`).
    pub path: Vec<u8>,
    /// `HTTP/1.1` (Envoy's upstream protocol in the shipped configs).
    pub version: String,
    /// In wire order, duplicates kept (two `cookie` lines stay two), names lowercased.
    pub headers: Headers,
    pub body: Vec<u8>,
    /// Trailers of a chunked body, if any.
    pub trailers: Headers,
}

impl Recorded {
    /// The request-target as text (lossy for bytes that are not UTF-8; compare `path` for bytes).
    pub fn path_str(&self) -> String {
        lossy(&self.path)
    }
    /// The first value of `name` as text (lossy), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_bytes(name).map(lossy)
    }
    /// The first value of `name`, exact bytes.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        find_all(&self.headers, name).next()
    }
    /// Every value of `name`, in order (lossy text).
    pub fn header_all(&self, name: &str) -> Vec<String> {
        find_all(&self.headers, name).map(lossy).collect()
    }
    pub fn body_str(&self) -> String {
        lossy(&self.body)
    }
}

/// A scripted upstream response.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    /// Sent in this order; several of one name (e.g. `set-cookie`) stay several.
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Default for Reply {
    fn default() -> Self {
        Reply::ok()
    }
}

impl Reply {
    /// 200 with body `ok` (the default answer of every upstream).
    pub fn ok() -> Self {
        Reply::status(200)
            .header("content-type", "text/plain")
            .body("ok")
    }
    /// The given status, no headers, empty body.
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    /// Appends a header (raw bytes allowed, 0x80-0xFF included). Panics on a name or value
    /// that HTTP cannot carry, so the mistake shows in the test, not as a mysterious 503.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        let (n, v) = to_header(name, value.as_ref());
        self.headers
            .push((n.as_str().to_owned(), v.as_bytes().to_vec()));
        self
    }
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(Bytes::from(self.body)));
        *resp.status_mut() = hyper::StatusCode::from_u16(self.status)
            .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        for (name, value) in &self.headers {
            let (n, v) = to_header(name, value);
            resp.headers_mut().append(n, v);
        }
        resp
    }
}

type Responder = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

struct UpstreamState {
    requests: Mutex<Vec<Recorded>>,
    responder: Mutex<Responder>,
}

/// A recording HTTP/1.1 server on `127.0.0.1:<free port>`. Stops when dropped.
///
/// Byte-exactness: hyper parses the request into an `http::Uri`, which refuses request-targets
/// that are not valid UTF-8 or hold bytes like `<` `>` `` ` `` (and `"` in the query): hyper
/// answers 400 and has no option to keep the raw target. So each connection's reads go through
/// [`Tap`], which copies every request head verbatim before hyper sees it and, only inside the
/// request-target, replaces such bytes with `_` so hyper accepts the request. The recorded
/// method, target and headers come from that verbatim copy (in wire order, duplicates kept);
/// hyper still does all the framing (content-length, chunked, trailers, keep-alive).
/// Requests on one connection are expected one at a time, as Envoy sends them; pipelined
/// requests (which Envoy never sends) would not be recorded reliably.
pub struct Upstream {
    port: u16,
    state: Arc<UpstreamState>,
    task: JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream on 127.0.0.1:0");
        let port = listener.local_addr().expect("upstream local_addr").port();
        let state = Arc::new(UpstreamState {
            requests: Mutex::new(Vec::new()),
            responder: Mutex::new(Arc::new(|_: &Recorded| Reply::ok())),
        });
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        Upstream { port, state, task }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state.requests).clone()
    }

    /// The most recent request, if any.
    pub fn last(&self) -> Option<Recorded> {
        lock(&self.state.requests).last().cloned()
    }

    pub fn count(&self) -> usize {
        lock(&self.state.requests).len()
    }

    /// Forgets the requests recorded so far.
    pub fn clear(&self) {
        lock(&self.state.requests).clear();
    }

    /// Scripts the responses from now on. The request is recorded before `f` runs; if `f`
    /// panics, the upstream answers 500 with a body saying so.
    pub fn respond_with(&self, f: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) {
        *lock(&self.state.responder) = Arc::new(f);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking respond_with closure must not poison the recorder for the rest of the test.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept_loop(listener: TcpListener, state: Arc<UpstreamState>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // e.g. out of file descriptors: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while connections.try_join_next().is_some() {}
        let tap = Arc::new(Mutex::new(TapState::new()));
        let io = TokioIo::new(Tap {
            io: stream,
            state: tap.clone(),
        });
        let state = state.clone();
        let service = hyper::service::service_fn(move |req| serve(req, state.clone(), tap.clone()));
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            // Tests send many and large headers on purpose; Envoy's own limits apply first.
            builder.max_headers(1000).max_buf_size(1 << 20);
            let _ = builder.serve_connection(io, service).await;
        });
    }
}

async fn serve(
    req: Request<Incoming>,
    state: Arc<UpstreamState>,
    tap: Arc<Mutex<TapState>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let head = lock(&tap).heads.pop_front();
    let (parts, body) = req.into_parts();
    let collected = match body.collect().await {
        Ok(c) => c,
        Err(e) => {
            // The client went away mid-body; nothing complete to record.
            return Ok(Reply::status(400)
                .body(format!("test upstream: body: {e}"))
                .into_response());
        }
    };
    // The body is complete, so the next bytes on this connection start the next request
    // (Envoy never pipelines HTTP/1.1 upstream requests).
    lock(&tap).arm();
    let trailers = collected
        .trailers()
        .map(header_map_to_vec)
        .unwrap_or_default();
    let body = collected.to_bytes().to_vec();
    let mut recorded = match head.as_deref().and_then(parse_head) {
        Some(r) => r,
        None => Recorded {
            // Unreachable while Tap works; hyper's view (normalised) beats nothing.
            method: parts.method.to_string(),
            path: parts.uri.to_string().into_bytes(),
            version: format!("{:?}", parts.version),
            headers: header_map_to_vec(&parts.headers),
            ..Recorded::default()
        },
    };
    recorded.body = body;
    recorded.trailers = trailers;
    lock(&state.requests).push(recorded.clone());
    let responder = lock(&state.responder).clone();
    let reply =
        std::panic::catch_unwind(AssertUnwindSafe(|| responder(&recorded))).unwrap_or_else(|_| {
            Reply::status(500).body("test upstream: the respond_with closure panicked")
        });
    Ok(reply.into_response())
}

/// Parses a verbatim request head (request line + header lines) that hyper has accepted.
fn parse_head(head: &[u8]) -> Option<Recorded> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next()?;
    let first_space = request_line.iter().position(|&b| b == b' ')?;
    let last_space = request_line.iter().rposition(|&b| b == b' ')?;
    if last_space <= first_space {
        return None;
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let colon = line.iter().position(|&b| b == b':')?;
        let name = lossy(&line[..colon]).to_ascii_lowercase();
        let value = line[colon + 1..].trim_ascii().to_vec();
        headers.push((name, value));
    }
    Some(Recorded {
        method: lossy(&request_line[..first_space]),
        path: request_line[first_space + 1..last_space].to_vec(),
        version: lossy(&request_line[last_space + 1..]),
        headers,
        ..Recorded::default()
    })
}

/// Per-connection state of [`Tap`].
struct TapState {
    /// Reading a request head (true at connection start and after each complete request).
    capturing: bool,
    /// Which part of the request line the next byte belongs to: 0 method, 1 target, 2 rest.
    line_part: u8,
    buf: Vec<u8>,
    heads: VecDeque<Vec<u8>>,
}

impl TapState {
    fn new() -> Self {
        TapState {
            capturing: true,
            line_part: 0,
            buf: Vec::new(),
            heads: VecDeque::new(),
        }
    }

    fn arm(&mut self) {
        self.capturing = true;
        self.line_part = 0;
        self.buf.clear();
    }

    /// Records `b` and returns the byte hyper should see instead.
    fn feed(&mut self, b: u8) -> u8 {
        if !self.capturing || (self.buf.is_empty() && (b == b'\r' || b == b'\n')) {
            return b;
        }
        self.buf.push(b);
        let mut out = b;
        match (self.line_part, b) {
            (0 | 1, b' ') => self.line_part += 1,
            (1, _) if !uri_safe(b) => out = b'_',
            (_, b'\n') => self.line_part = 2,
            _ => {}
        }
        if self.buf.ends_with(b"\r\n\r\n") || self.buf.ends_with(b"\n\n") {
            self.heads.push_back(std::mem::take(&mut self.buf));
            self.capturing = false;
        }
        out
    }
}

/// Bytes that `http::Uri` accepts anywhere in a path or query.
fn uri_safe(b: u8) -> bool {
    matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x5B | 0x5D | 0x5F | 0x61..=0x7A | 0x7E)
}

/// Copies request heads off the wire before hyper parses them (see [`Upstream`]).
struct Tap {
    io: TcpStream,
    state: Arc<Mutex<TapState>>,
}

impl AsyncRead for Tap {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let mut st = lock(&this.state);
            for b in &mut buf.filled_mut()[before..] {
                *b = st.feed(*b);
            }
        }
        result
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------------------------
// Client

/// A request for [`send`] / [`send_h2`].
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    /// The request-target, sent exactly as given (`/a;jsessionid=1?x=%zz&b`). It must be
    /// something `http::Uri` accepts; for anything else use [`raw_http1`].
    pub path: String,
    /// Sent in this order; several of one name allowed; raw bytes (0x80-0xFF) allowed.
    /// `host` defaults to `localhost` (over h2 it becomes `:authority`).
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Req {
    pub fn new(method: &str, path: &str) -> Self {
        Req {
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    pub fn get(path: &str) -> Self {
        Req::new("GET", path)
    }
    pub fn post(path: &str, body: impl Into<Vec<u8>>) -> Self {
        Req::new("POST", path).body(body)
    }
    /// Appends a header; call twice with one name to send it twice.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.as_ref().to_vec()));
        self
    }
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// A response as the client received it. Header order is hyper's `HeaderMap` order: values of
/// one name stay together and in order (several `set-cookie` stay several).
#[derive(Clone, Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Resp {
    /// The first value of `name` as text (lossy), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_bytes(name).map(lossy)
    }
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        find_all(&self.headers, name).next()
    }
    /// Every value of `name`, in order (lossy text).
    pub fn header_all(&self, name: &str) -> Vec<String> {
        find_all(&self.headers, name).map(lossy).collect()
    }
    pub fn body_str(&self) -> String {
        lossy(&self.body)
    }
}

#[derive(Clone, Copy, Debug)]
enum Proto {
    H1,
    H2,
}

/// Sends `req` over a fresh HTTP/1.1 connection to `127.0.0.1:port`. Panics on a connection
/// error or after [`REQUEST_TIMEOUT`]; use [`try_send`] to observe such errors.
pub async fn send(port: u16, req: Req) -> Resp {
    let what = format!("HTTP/1.1 {} {} to port {port}", req.method, req.path);
    try_send(port, req)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Sends `req` over a fresh h2c connection (HTTP/2 with prior knowledge).
pub async fn send_h2(port: u16, req: Req) -> Resp {
    let what = format!("HTTP/2 {} {} to port {port}", req.method, req.path);
    try_send_h2(port, req)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

pub async fn try_send(port: u16, req: Req) -> Result<Resp, String> {
    within(REQUEST_TIMEOUT, exchange(port, req, Proto::H1)).await?
}

pub async fn try_send_h2(port: u16, req: Req) -> Result<Resp, String> {
    within(REQUEST_TIMEOUT, exchange(port, req, Proto::H2)).await?
}

async fn within<F: Future>(limit: Duration, f: F) -> Result<F::Output, String> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| format!("no answer within {limit:?}"))
}

async fn exchange(port: u16, req: Req, proto: Proto) -> Result<Resp, String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let io = TokioIo::new(stream);
    let host = find_all(&req.headers, "host")
        .next()
        .map(lossy)
        .unwrap_or_else(|| "localhost".to_owned());
    let method = Method::from_bytes(req.method.as_bytes()).map_err(|e| e.to_string())?;
    let uri = match proto {
        Proto::H1 => req.path.clone(),
        Proto::H2 => format!("http://{host}{}", req.path),
    };
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::from(req.body)))
        .map_err(|e| format!("building the request: {e}"))?;
    if let Proto::H1 = proto {
        let (n, v) = try_header("host", host.as_bytes())?;
        request.headers_mut().append(n, v);
    }
    for (name, value) in req.headers.iter().filter(|(n, _)| n != "host") {
        let (n, v) = try_header(name, value)?;
        request.headers_mut().append(n, v);
    }
    let response = match proto {
        Proto::H1 => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(conn);
            sender.send_request(request).await
        }
        Proto::H2 => {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| format!("h2 handshake: {e}"))?;
            tokio::spawn(conn);
            sender.send_request(request).await
        }
    }
    .map_err(|e| format!("request: {e}"))?;
    let status = response.status().as_u16();
    let headers = header_map_to_vec(response.headers());
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("response body: {e}"))?
        .to_bytes()
        .to_vec();
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// Writes `request` as-is to `127.0.0.1:port` and returns the raw bytes of one response.
///
/// Hand-written HTTP (with [`raw_h2`] the only such code here), for request-targets that
/// `http::Uri`, and so hyper's client, refuses: bytes 0x80-0xFF in the path (Envoy answers
/// them 400 over HTTP/1.1), `<`, `>`, `` ` ``, ... Reads until the response is
/// complete (by `content-length`, chunked end or a body-less status) or the peer closes;
/// panics after [`REQUEST_TIMEOUT`].
pub async fn raw_http1(port: u16, request: &[u8]) -> Vec<u8> {
    let work = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("raw_http1: connect");
        stream.write_all(request).await.expect("raw_http1: write");
        let mut out = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&chunk[..n]);
            if raw_response_complete(&out) {
                return out;
            }
        }
    };
    within(REQUEST_TIMEOUT, work)
        .await
        .unwrap_or_else(|e| panic!("raw_http1 to port {port}: {e}"))
}

fn raw_response_complete(data: &[u8]) -> bool {
    let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = lossy(&data[..end]).to_ascii_lowercase();
    let body = &data[end + 4..];
    let status = raw_status(data).unwrap_or(0);
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return true;
    }
    for line in head.lines().skip(1) {
        if let Some(v) = line.strip_prefix("content-length:") {
            return v.trim().parse::<usize>().is_ok_and(|n| body.len() >= n);
        }
        if line.starts_with("transfer-encoding:") && line.contains("chunked") {
            return body.ends_with(b"0\r\n\r\n");
        }
    }
    false
}

/// The status code of a raw HTTP/1.x response (`HTTP/1.1 400 Bad Request` → 400).
pub fn raw_status(response: &[u8]) -> Option<u16> {
    let line = response.split(|&b| b == b'\r').next()?;
    lossy(line).split(' ').nth(1)?.parse().ok()
}

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
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).expect("frame size");
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }
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

// ---------------------------------------------------------------------------------------------
// Cookies

/// The whole `Set-Cookie` line that sets cookie `name`, if any (the first one).
pub fn set_cookie(resp: &Resp, name: &str) -> Option<String> {
    set_cookies(resp, name).into_iter().next()
}

/// Every `Set-Cookie` line for cookie `name`, in order.
pub fn set_cookies(resp: &Resp, name: &str) -> Vec<String> {
    resp.header_all("set-cookie")
        .into_iter()
        .filter(|line| cookie_name(line) == name)
        .collect()
}

/// The value that `Set-Cookie` gives cookie `name` (the text between `=` and the first `;`).
pub fn set_cookie_value(resp: &Resp, name: &str) -> Option<String> {
    set_cookie(resp, name).map(|line| {
        let pair = line.split(';').next().unwrap_or_default();
        pair.split_once('=')
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    })
}

/// The attribute `attr` of a `Set-Cookie` line, case-insensitive: `Some("")` for a flag like
/// `HttpOnly`, `Some("Lax")` for `SameSite=Lax`, `None` when absent.
pub fn cookie_attr(set_cookie_line: &str, attr: &str) -> Option<String> {
    set_cookie_line.split(';').skip(1).find_map(|part| {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        k.trim()
            .eq_ignore_ascii_case(attr)
            .then(|| v.trim().to_owned())
    })
}

/// A `Cookie` request header value from pairs: `[("a", "1"), ("b", "2")]` → `a=1; b=2`.
pub fn cookie_header(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn cookie_name(set_cookie_line: &str) -> &str {
    set_cookie_line
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .map(|(k, _)| k.trim())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Envoy

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `ENVOY_BIN`, else `<repo>/.venv/bin/envoy`.
pub fn envoy_bin() -> PathBuf {
    std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join(".venv/bin/envoy"))
}

/// `SESSION_GUARD_WASM` (made absolute), else the `make build` output.
pub fn wasm_path() -> PathBuf {
    let p = std::env::var_os("SESSION_GUARD_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target/wasm32-wasip1/release/session_guard.wasm"));
    if p.is_absolute() {
        p
    } else {
        manifest_dir().join(p)
    }
}

/// A fresh directory under the system temp dir, unique across threads and processes.
fn unique_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "session-guard-{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// A port nothing listens on (bound then released), for clusters a test gives no upstream.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

fn seq_mut<'a>(v: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    v.get_mut(key)
        .and_then(Value::as_sequence_mut)
        .into_iter()
        .flatten()
}

fn set_port(socket_holder: &mut Value, port: u16) {
    // `socket_holder` is an `address:` value: { socket_address: { address, port_value } }
    if let Some(sa) = socket_holder.get_mut("socket_address") {
        sa["port_value"] = Value::from(port);
    }
}

/// Every `envoy.filters.http.wasm` filter's `config` in the bootstrap.
fn wasm_plugin_configs(root: &mut Value) -> Vec<&mut Value> {
    let mut out = Vec::new();
    let Some(static_resources) = root.get_mut("static_resources") else {
        return out;
    };
    for listener in seq_mut(static_resources, "listeners") {
        for chain in seq_mut(listener, "filter_chains") {
            for filter in seq_mut(chain, "filters") {
                let Some(hcm) = filter.get_mut("typed_config") else {
                    continue;
                };
                for http_filter in seq_mut(hcm, "http_filters") {
                    let is_wasm = http_filter.get("name").and_then(Value::as_str)
                        == Some("envoy.filters.http.wasm");
                    if let (true, Some(config)) = (
                        is_wasm,
                        http_filter
                            .get_mut("typed_config")
                            .and_then(|t| t.get_mut("config")),
                    ) {
                        out.push(config);
                    }
                }
            }
        }
    }
    out
}

type Edit = Box<dyn FnOnce(&mut Value)>;

/// Builds a runnable Envoy configuration from a shipped one (see the module docs).
pub struct EnvoyBuilder {
    source: PathBuf,
    config: Value,
    upstreams: BTreeMap<String, u16>,
    substitute_ports: bool,
    filter_config: Option<String>,
    env: BTreeMap<String, Option<String>>,
    concurrency: u32,
    log_level: String,
    component_log_level: String,
    edits: Vec<Edit>,
}

impl EnvoyBuilder {
    /// Loads a shipped config, e.g. `envoy/ingress.yaml` (relative to the repo root).
    pub fn shipped(path: &str) -> Self {
        let source = manifest_dir().join(path);
        let text = std::fs::read_to_string(&source)
            .unwrap_or_else(|e| panic!("read {}: {e}", source.display()));
        let config: Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("parse {}: {e}", source.display()));
        let mut env = BTreeMap::new();
        env.insert("SESSION_GUARD_KEY".to_owned(), Some(TEST_KEY.to_owned()));
        EnvoyBuilder {
            source,
            config,
            upstreams: BTreeMap::new(),
            substitute_ports: true,
            filter_config: None,
            env,
            concurrency: 1,
            log_level: "warning".to_owned(),
            component_log_level: "wasm:debug".to_owned(),
            edits: Vec::new(),
        }
    }

    /// Points cluster `cluster`'s endpoints at `up`. Clusters given no upstream point at a port
    /// where nothing listens (Envoy answers 503), never at the shipped 808x ports.
    pub fn upstream(self, cluster: &str, up: &Upstream) -> Self {
        self.upstream_port(cluster, up.port())
    }

    pub fn upstream_port(mut self, cluster: &str, port: u16) -> Self {
        self.upstreams.insert(cluster.to_owned(), port);
        self
    }

    /// Replaces the filter's configuration (the JSON in the `StringValue`).
    pub fn filter_config(mut self, json: impl Into<String>) -> Self {
        self.filter_config = Some(json.into());
        self
    }

    /// Sets an environment variable for Envoy (`SESSION_GUARD_KEY` defaults to [`TEST_KEY`]).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.to_owned(), Some(value.to_owned()));
        self
    }

    /// Removes an environment variable from Envoy's environment.
    pub fn env_remove(mut self, name: &str) -> Self {
        self.env.insert(name.to_owned(), None);
        self
    }

    /// Worker threads (`--concurrency`), default 1.
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }

    /// Envoy's main log level (`-l`), default `warning` (the filter logs under `wasm`).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    /// `--component-log-level`, default `wasm:debug`.
    pub fn component_log_level(mut self, spec: &str) -> Self {
        self.component_log_level = spec.to_owned();
        self
    }

    /// Keeps the shipped ports (for `--mode validate`, which binds nothing).
    pub fn keep_ports(mut self) -> Self {
        self.substitute_ports = false;
        self
    }

    /// Any further structural change to the bootstrap, applied after the substitutions.
    pub fn edit(mut self, f: impl FnOnce(&mut Value) + 'static) -> Self {
        self.edits.push(Box::new(f));
        self
    }

    /// The bootstrap with every substitution applied.
    pub fn render(self) -> Value {
        let wasm = wasm_path();
        let mut root = self.config;
        let source = self.source.display().to_string();
        if self.substitute_ports {
            let mut unused: Vec<&String> = self.upstreams.keys().collect();
            if let Some(addr) = root.get_mut("admin").and_then(|a| a.get_mut("address")) {
                set_port(addr, 0);
            }
            if let Some(sr) = root.get_mut("static_resources") {
                for listener in seq_mut(sr, "listeners") {
                    if let Some(addr) = listener.get_mut("address") {
                        set_port(addr, 0);
                    }
                }
                for cluster in seq_mut(sr, "clusters") {
                    let name = cluster
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    unused.retain(|u| **u != name);
                    let port = self.upstreams.get(&name).copied().unwrap_or_else(dead_port);
                    let Some(la) = cluster.get_mut("load_assignment") else {
                        continue;
                    };
                    for group in seq_mut(la, "endpoints") {
                        for lb in seq_mut(group, "lb_endpoints") {
                            if let Some(addr) =
                                lb.get_mut("endpoint").and_then(|e| e.get_mut("address"))
                            {
                                set_port(addr, port);
                            }
                        }
                    }
                }
            }
            assert!(
                unused.is_empty(),
                "{source} has no cluster named {unused:?}"
            );
        }
        let plugins = wasm_plugin_configs(&mut root);
        assert!(
            !plugins.is_empty(),
            "{source}: no envoy.filters.http.wasm filter"
        );
        for plugin in plugins {
            plugin["vm_config"]["code"]["local"]["filename"] =
                Value::from(wasm.display().to_string());
            if let Some(json) = &self.filter_config {
                plugin["configuration"]["value"] = Value::from(json.as_str());
            }
        }
        for edit in self.edits {
            edit(&mut root);
        }
        root
    }

    /// Starts Envoy and waits (at most [`STARTUP_TIMEOUT`]) until admin `/ready` says LIVE and
    /// every listener accepts connections. Panics with the log tail otherwise.
    pub async fn start(self) -> Envoy {
        let mut envoy = self.spawn().await;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = envoy.child.try_wait().expect("try_wait envoy") {
                panic!("Envoy exited during startup ({status}); its log tail follows");
            }
            if let Some(listeners) = envoy.serving().await {
                envoy.listeners = listeners;
                break;
            }
            if Instant::now() > deadline {
                panic!("Envoy not ready within {STARTUP_TIMEOUT:?}; its log tail follows");
            }
            tokio::time::sleep(POLL).await;
        }
        envoy.port = envoy.listeners.values().next().copied().unwrap_or(0);
        envoy
    }

    /// Starts Envoy with a configuration that must be refused and returns Envoy's exit code and
    /// log. Envoy 1.40 refuses a static listener whose wasm plugin fails `on_configure` by
    /// exiting with code 1 at startup ("Unable to create Wasm plugin"). Panics (with the log
    /// tail) if Envoy serves instead, or is still running after [`STARTUP_TIMEOUT`].
    pub async fn start_expect_failure(self) -> (Option<i32>, String) {
        let mut envoy = self.spawn().await;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = envoy.child.try_wait().expect("try_wait envoy") {
                return (status.code(), envoy.log());
            }
            if let Some(listeners) = envoy.serving().await {
                panic!(
                    "Envoy serves {listeners:?} although the configuration should be refused; \
                     its log tail follows"
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "Envoy neither exited nor served within {STARTUP_TIMEOUT:?} (up without a \
                     listener?); its log tail follows"
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs `envoy --mode validate` on the rendered config. Returns (valid, output).
    /// Note: validate mode does load the wasm and runs its `on_configure`, so it sees the
    /// filter's own configuration checks (and needs the key's environment variable).
    pub async fn validate(self) -> (bool, String) {
        let dir = unique_dir("validate");
        let (config, env) = self.write_config(&dir);
        let mut cmd = Command::new(envoy_bin());
        apply_env(&mut cmd, &env);
        cmd.arg("--mode")
            .arg("validate")
            .arg("-c")
            .arg(&config)
            .arg("-l")
            .arg("info")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = within(STARTUP_TIMEOUT, cmd.output())
            .await
            .unwrap_or_else(|e| panic!("envoy --mode validate: {e}"))
            .unwrap_or_else(|e| panic!("run {}: {e}", envoy_bin().display()));
        let _ = std::fs::remove_dir_all(&dir);
        let text = format!("{}{}", lossy(&output.stdout), lossy(&output.stderr));
        (output.status.success(), text)
    }

    /// Renders the config into `dir/envoy.yaml`; returns the path and the environment.
    fn write_config(self, dir: &Path) -> (PathBuf, BTreeMap<String, Option<String>>) {
        let path = dir.join("envoy.yaml");
        let env = self.env.clone();
        let yaml = serde_yaml::to_string(&self.render()).expect("serialize envoy config");
        std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        (path, env)
    }

    async fn spawn(self) -> Envoy {
        let bin = envoy_bin();
        assert!(
            bin.exists(),
            "no Envoy at {} (set ENVOY_BIN or run `make deps`)",
            bin.display()
        );
        let wasm = wasm_path();
        assert!(
            wasm.exists(),
            "no filter at {} (set SESSION_GUARD_WASM or run `make build`)",
            wasm.display()
        );
        let dir = unique_dir("envoy");
        let concurrency = self.concurrency;
        let log_level = self.log_level.clone();
        let component = self.component_log_level.clone();
        let (config, env) = self.write_config(&dir);
        let log_path = dir.join("envoy.log");
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("create stderr.log");
        let mut cmd = Command::new(&bin);
        cmd.arg("-c")
            .arg(&config)
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(dir.join("admin-address"))
            .arg("--log-path")
            .arg(&log_path)
            // The log file is otherwise flushed every 10 s; tests read it while Envoy runs.
            .arg("--file-flush-interval-msec")
            .arg("20")
            .arg("-l")
            .arg(&log_level)
            .arg("--component-log-level")
            .arg(&component)
            .arg("--concurrency")
            .arg(concurrency.to_string())
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().expect("dup stderr.log"))
            .stderr(stderr)
            .kill_on_drop(true);
        apply_env(&mut cmd, &env);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        Envoy {
            child,
            dir,
            port: 0,
            admin_port: 0,
            listeners: BTreeMap::new(),
        }
    }
}

fn apply_env(cmd: &mut Command, env: &BTreeMap<String, Option<String>>) {
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A running Envoy. Dropping it kills the process (SIGKILL) and removes its temp dir.
pub struct Envoy {
    child: Child,
    dir: PathBuf,
    port: u16,
    admin_port: u16,
    listeners: BTreeMap<String, u16>,
}

impl Envoy {
    /// The port of the (first) listener.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the listener named `name` in the config.
    pub fn listener_port(&self, name: &str) -> u16 {
        *self
            .listeners
            .get(name)
            .unwrap_or_else(|| panic!("no listener {name:?}; have {:?}", self.listeners))
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The directory holding `envoy.yaml`, `envoy.log` and `stderr.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Everything Envoy logged so far (the log file, then stdout/stderr).
    pub fn log(&self) -> String {
        let read = |name: &str| {
            std::fs::read(self.dir.join(name))
                .map(|b| lossy(&b))
                .unwrap_or_default()
        };
        format!("{}{}", read("envoy.log"), read("stderr.log"))
    }

    /// GET `path` on the admin interface.
    pub async fn admin(&self, path: &str) -> Resp {
        send(self.admin_port, Req::get(path)).await
    }

    /// Every counter, from admin `/stats?format=json&type=Counters`.
    pub async fn counters(&self) -> BTreeMap<String, u64> {
        let resp = self.admin("/stats?format=json&type=Counters").await;
        let json: serde_json::Value = serde_json::from_slice(&resp.body)
            .unwrap_or_else(|e| panic!("admin /stats JSON: {e}: {}", resp.body_str()));
        json["stats"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| Some((s["name"].as_str()?.to_owned(), s["value"].as_u64()?)))
            .collect()
    }

    /// A counter by name: exact, or the filter's own under `wasmcustom.` (so
    /// `counter("session_guard.session.minted")` reads `wasmcustom.session_guard.session.minted`).
    /// 0 when absent.
    pub async fn counter(&self, name: &str) -> u64 {
        let counters = self.counters().await;
        counters
            .get(name)
            .or_else(|| counters.get(&format!("wasmcustom.{name}")))
            .copied()
            .unwrap_or(0)
    }

    /// Polls [`Envoy::counter`] until it reaches `at_least` (for counters the filter updates
    /// after the response went out); panics after 5 s. Returns the value reached.
    pub async fn wait_counter(&self, name: &str, at_least: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.counter(name).await;
            if v >= at_least {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "counter {name} is {v}, expected at least {at_least}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Admin `/stats/prometheus`.
    pub async fn prometheus(&self) -> String {
        self.admin("/stats/prometheus").await.body_str()
    }

    /// Polls the log until a line contains `needle`; panics after 5 s. Returns that line.
    pub async fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no log line contains {needle:?}; Envoy's log tail follows"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Listener name → port once admin says LIVE and every listener accepts; `None` before.
    async fn serving(&mut self) -> Option<BTreeMap<String, u16>> {
        if self.admin_port == 0 {
            let text = std::fs::read_to_string(self.dir.join("admin-address")).ok()?;
            self.admin_port = text.trim().rsplit(':').next()?.parse().ok()?;
        }
        let ready = try_send(self.admin_port, Req::get("/ready")).await.ok()?;
        if ready.status != 200 || ready.body_str().trim() != "LIVE" {
            return None;
        }
        let resp = try_send(self.admin_port, Req::get("/listeners?format=json"))
            .await
            .ok()?;
        let json: serde_json::Value = serde_json::from_slice(&resp.body).ok()?;
        let mut listeners = BTreeMap::new();
        for l in json["listener_statuses"].as_array()? {
            let name = l["name"].as_str()?.to_owned();
            let port = l["local_address"]["socket_address"]["port_value"].as_u64()?;
            listeners.insert(name, u16::try_from(port).ok().filter(|p| *p != 0)?);
        }
        if listeners.is_empty() {
            return None;
        }
        for port in listeners.values() {
            TcpStream::connect(("127.0.0.1", *port)).await.ok()?;
        }
        Some(listeners)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if self.child.id().is_some() {
                // Still running: let Envoy's 20 ms file flush run once before SIGKILL drops
                // its buffer, so the tail below is complete. Failing tests only.
                std::thread::sleep(Duration::from_millis(100));
            }
            eprintln!(
                "--- Envoy log tail ({}) ---\n{}\n--- end of Envoy log ---",
                self.dir.display(),
                tail(&self.log(), 80)
            );
        }
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
