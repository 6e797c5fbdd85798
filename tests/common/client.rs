//! Clients: [`send`] / [`send_h2`] through hyper (the request-target goes out exactly as
//! given), and [`raw_http1`] for request-targets that `http::Uri` refuses.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{find_all, header_map_to_vec, lossy, try_header, within, Headers, REQUEST_TIMEOUT};

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
    message_accessors!();
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
