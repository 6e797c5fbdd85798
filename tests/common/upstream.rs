//! [`Upstream`]: a recording HTTP/1.1 server, byte for byte, answering with a scripted [`Reply`].

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::{find_all, header_map_to_vec, lossy, to_header, Headers};

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
    message_accessors!();
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
