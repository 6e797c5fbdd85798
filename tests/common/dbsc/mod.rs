//! A scripted DBSC client (W3C Device Bound Session Credentials) that follows the protocol the
//! way Chrome 148 ships it, with its own P-256 key: the oracle of the DBSC end-to-end tests.
//!
//! ```ignore
//! let mut victim = DbscClient::new(port);
//! let login = victim.get("/auth/login?user=victim").await;
//! let offer = registration(&login).expect("offered");
//! victim.register(&offer).await;            // POST <path>/start with the signed JWT
//! victim.get("/").await;                    // defers and refreshes when the ticket is gone
//! ```
//!
//! - [`Device`]: a P-256 key from random bytes; builds the `dbsc+jwt` proofs: header
//!   `{"alg":"ES256","jwk":{..},"typ":"dbsc+jwt"}` at registration, without `jwk` at refresh;
//!   payload `{"jti":<challenge>}`; signature raw r‖s; every part base64url without padding.
//!   (Chrome's JSON writer sorts keys, as `serde_json` does here.)
//! - [`registration`] and [`challenges`]: the response headers `Secure-Session-Registration`
//!   (an RFC 9651 list of inner lists with `path`, `challenge` params) and
//!   `Secure-Session-Challenge` (`"c";id="..."`), parsed by [`parse_sf_list`].
//! - [`DbscClient`]: a [`Browser`] (cookie jar) plus a device and the session it registered:
//!   registration, refresh with the cached (pre-seeded) challenge or the 403 round trip, the
//!   end of the session on `{"continue":false}` or another 4xx, and the deferral of a request
//!   that lacks the bound cookie. Every exchange is kept in [`DbscClient::exchanges`].
//! - [`Form`]: the header tokens bare (what Chrome 148 sends) or as sf-strings (the spec's ABNF).
//! - `site` (re-exported): the shipped ingress with DBSC on ([`dbsc_mesh`], [`dbsc_config`]), its
//!   auth service and app, what the app saw ([`seen`]), and a logged-in, registered client
//!   ([`bound_client`]). `sf`: the structured-field parser.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{json, Value};

mod sf;
mod site;
pub use sf::*;
pub use site::*;

use super::{Browser, Req, Resp, Wire};

/// The request header that carries the proof (the JWT).
pub const RESPONSE_HEADER: &str = "secure-session-response";
/// The request header that names the DBSC session at refresh.
pub const ID_HEADER: &str = "sec-secure-session-id";
/// The response header that offers registration.
pub const REGISTRATION_HEADER: &str = "secure-session-registration";
/// The response header that carries (or pre-seeds) a challenge.
pub const CHALLENGE_HEADER: &str = "secure-session-challenge";

// ---------------------------------------------------------------------------------------------
// The device

/// A device key, P-256, made from OS randomness (a software stand-in for the TPM key).
#[derive(Clone)]
pub struct Device {
    key: SigningKey,
}

impl Default for Device {
    fn default() -> Self {
        Device::new()
    }
}

impl Device {
    pub fn new() -> Device {
        loop {
            let mut bytes = [0u8; 32];
            getrandom::getrandom(&mut bytes).expect("OS randomness");
            // A scalar of zero or >= n is refused: vanishingly rare, just draw again.
            if let Ok(key) = SigningKey::from_slice(&bytes) {
                return Device { key };
            }
        }
    }

    /// The public key (to check a signature the test made).
    pub fn verifying_key(&self) -> p256::ecdsa::VerifyingKey {
        *self.key.verifying_key()
    }

    /// The public key as a JWK: `{"crv":"P-256","kty":"EC","x":..,"y":..}`.
    pub fn jwk(&self) -> Value {
        let point = self.key.verifying_key().to_encoded_point(false);
        let x = point.x().expect("uncompressed point has x");
        let y = point.y().expect("uncompressed point has y");
        json!({"kty": "EC", "crv": "P-256", "x": B64.encode(x), "y": B64.encode(y)})
    }

    /// The registration proof over `challenge`: the header carries the `jwk`.
    pub fn registration_jwt(&self, challenge: &str) -> String {
        let header = json!({"alg": "ES256", "typ": "dbsc+jwt", "jwk": self.jwk()});
        self.jwt(&header, &json!({ "jti": challenge }))
    }

    /// The refresh proof over `challenge`: no `jwk`.
    pub fn refresh_jwt(&self, challenge: &str) -> String {
        let header = json!({"alg": "ES256", "typ": "dbsc+jwt"});
        self.jwt(&header, &json!({ "jti": challenge }))
    }

    /// Any header and payload, signed ES256 (for the hostile variants).
    pub fn jwt(&self, header: &Value, payload: &Value) -> String {
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(payload.to_string())
        );
        self.sign_input(&input)
    }

    /// `input` (`<b64 header>.<b64 payload>`) with its ES256 signature appended.
    pub fn sign_input(&self, input: &str) -> String {
        let signature: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(signature.to_bytes()))
    }
}

/// The three parts of a compact JWT, the first two decoded as JSON (for tests that tamper).
pub fn jwt_parts(jwt: &str) -> (Value, Value, Vec<u8>) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWT: {jwt}");
    let json = |p: &str| serde_json::from_slice(&B64.decode(p).expect("base64url")).expect("JSON");
    (
        json(parts[0]),
        json(parts[1]),
        B64.decode(parts[2]).expect("base64url signature"),
    )
}

// ---------------------------------------------------------------------------------------------
// What the server sends

/// One entry of `Secure-Session-Registration`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The algorithm tokens offered (`ES256`, ...).
    pub algorithms: Vec<String>,
    pub path: String,
    pub challenge: Option<String>,
    pub authorization: Option<String>,
}

/// Every registration offered by `resp` (every `Secure-Session-Registration` line, every
/// member). Panics on a header that is not a valid structured field: a browser would ignore
/// it, and the test must see that.
pub fn registrations(resp: &Resp) -> Vec<Registration> {
    let mut out = Vec::new();
    for line in resp.header_all(REGISTRATION_HEADER) {
        let list = parse_sf_list(&line)
            .unwrap_or_else(|| panic!("{REGISTRATION_HEADER} is not an RFC 9651 list: {line}"));
        for m in list {
            assert!(m.inner_list, "a registration is an inner list: {line}");
            let algorithms = m
                .items
                .iter()
                .map(|i| match i {
                    Bare::Token(t) => t.clone(),
                    other => panic!("algorithm not a token: {other:?} in {line}"),
                })
                .collect();
            out.push(Registration {
                algorithms,
                path: m
                    .param_str("path")
                    .unwrap_or_else(|| panic!("no path in {line}"))
                    .to_owned(),
                challenge: m.param_str("challenge").map(str::to_owned),
                authorization: m.param_str("authorization").map(str::to_owned),
            });
        }
    }
    out
}

/// The registration an ES256 browser would take from `resp`, if any.
pub fn registration(resp: &Resp) -> Option<Registration> {
    registrations(resp)
        .into_iter()
        .find(|r| r.algorithms.iter().any(|a| a == "ES256"))
}

/// One challenge of `Secure-Session-Challenge`: the string and the session it is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub challenge: String,
    pub id: Option<String>,
}

/// Every challenge in `resp`'s `Secure-Session-Challenge` lines.
pub fn challenges(resp: &Resp) -> Vec<Challenge> {
    let mut out = Vec::new();
    for line in resp.header_all(CHALLENGE_HEADER) {
        let list = parse_sf_list(&line)
            .unwrap_or_else(|| panic!("{CHALLENGE_HEADER} is not an RFC 9651 list: {line}"));
        for m in list {
            let challenge = match m.items.as_slice() {
                [Bare::Str(s)] if !m.inner_list => s.clone(),
                _ => panic!("a challenge is an sf-string: {line}"),
            };
            out.push(Challenge {
                challenge,
                id: m.param_str("id").map(str::to_owned),
            });
        }
    }
    out
}

/// The challenge `resp` carries for session `id` (one without an `id` counts for any session).
pub fn challenge_for(resp: &Resp, id: &str) -> Option<String> {
    challenges(resp)
        .into_iter()
        .find(|c| c.id.as_deref().is_none_or(|i| i == id))
        .map(|c| c.challenge)
}

/// A JSON body, if the response has one.
pub fn json_body(resp: &Resp) -> Option<Value> {
    serde_json::from_slice(&resp.body).ok()
}

/// Whether `resp` is the answer that ends the browser's DBSC session: `{"continue": false}`.
pub fn is_continue_false(resp: &Resp) -> bool {
    resp.status == 200
        && json_body(resp).is_some_and(|v| v.get("continue") == Some(&Value::Bool(false)))
}

// ---------------------------------------------------------------------------------------------
// The client

/// How the client writes `Secure-Session-Response` and `Sec-Secure-Session-Id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Bare tokens, as Chrome 148 sends them.
    Bare,
    /// RFC 9651 sf-strings (`"..."`), as the spec's ABNF says.
    Quoted,
}

impl Form {
    pub fn write(self, token: &str) -> String {
        match self {
            Form::Bare => token.to_owned(),
            Form::Quoted => format!("\"{token}\""),
        }
    }
}

/// A DBSC session the client holds (what the browser keeps after registration).
#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub refresh_url: String,
    /// The bound cookie the session keeps alive (`credentials[0].name`).
    pub cookie: String,
    /// The last challenge the server gave for this session, not yet signed.
    pub challenge: Option<String>,
    /// The session config of the registration response.
    pub config: Value,
}

/// How a refresh ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 200 with no `continue: false`: new cookies.
    Refreshed,
    /// `{"continue": false}`, or a 4xx other than the challenge's 403: the session is over.
    Ended,
    /// 403 again after signing the server's new challenge: the session is over.
    Refused,
    /// 5xx, 3xx, ...: the session is kept, the request goes out without the cookie.
    Transient,
}

/// One DBSC request the client made, and its answer.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub path: String,
    /// The JWT sent in `Secure-Session-Response`, if any.
    pub jwt: Option<String>,
    pub signed: bool,
    pub resp: Resp,
}

/// A browser with DBSC: a cookie jar, a device key and the session registered with it.
#[derive(Clone)]
pub struct DbscClient {
    pub browser: Browser,
    pub device: Device,
    pub form: Form,
    pub session: Option<Session>,
    /// Chrome defers a request that lacks the session's bound cookie and refreshes first.
    pub defer: bool,
    pub exchanges: Vec<Exchange>,
}

impl DbscClient {
    pub fn new(port: u16) -> DbscClient {
        DbscClient {
            browser: Browser::new(port, Wire::H1),
            device: Device::new(),
            form: Form::Bare,
            session: None,
            defer: true,
            exchanges: Vec::new(),
        }
    }

    pub fn form(mut self, form: Form) -> Self {
        self.form = form;
        self
    }

    /// HTTP/1.1 (the default) or h2c.
    pub fn wire(mut self, wire: Wire) -> Self {
        self.browser.wire = wire;
        self
    }

    /// The DBSC session id (panics when there is none).
    pub fn id(&self) -> String {
        self.session.as_ref().expect("a DBSC session").id.clone()
    }

    /// A request to the site: first the refresh a browser runs when the session's bound
    /// cookie is missing (if [`DbscClient::defer`]), then the request with the jar's cookies.
    pub async fn request(&mut self, req: Req) -> Resp {
        let missing = self
            .session
            .as_ref()
            .is_some_and(|s| self.browser.jar.get(&s.cookie).is_none());
        if self.defer && missing {
            self.refresh().await;
        }
        self.browser.request(req).await
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        self.request(Req::get(path)).await
    }

    /// Registers with `offer` as Chrome does: POST `offer.path`, no body, the jar's cookies,
    /// the JWT over the offered challenge in `Secure-Session-Response`. A 403 with a new
    /// challenge is signed and tried once more. On 200 with a session config the session is
    /// kept, with the pre-seeded challenge. Returns the last response.
    pub async fn register(&mut self, offer: &Registration) -> Resp {
        let mut challenge = offer.challenge.clone();
        let mut resp = None;
        for _ in 0..2 {
            let jwt = challenge
                .as_deref()
                .map(|c| self.device.registration_jwt(c));
            let r = self.exchange(Req::post(&offer.path, Vec::new()), jwt).await;
            let retry = (r.status == 403).then(|| challenges(&r).into_iter().next());
            resp = Some(r);
            match retry.flatten() {
                Some(c) => challenge = Some(c.challenge),
                None => break,
            }
        }
        let resp = resp.expect("one registration request");
        if resp.status == 200 {
            self.session = session_from(&resp, &offer.path);
        }
        resp
    }

    /// Refreshes the session as Chrome does: POST `refresh_url` with `Sec-Secure-Session-Id`,
    /// the jar's cookies and, when a challenge is cached, its signed JWT; on 403 with a new
    /// challenge, sign it and try once more.
    pub async fn refresh(&mut self) -> Outcome {
        let Some(session) = self.session.clone() else {
            return Outcome::Ended;
        };
        let mut challenge = session.challenge.clone();
        let mut retried = false;
        loop {
            let req = Req::post(&session.refresh_url, Vec::new())
                .header(ID_HEADER, self.form.write(&session.id));
            let jwt = challenge.take().map(|c| self.device.refresh_jwt(&c));
            let resp = self.exchange(req, jwt).await;
            let next = challenge_for(&resp, &session.id);
            if let Some(s) = self.session.as_mut() {
                s.challenge = next.clone();
            }
            let outcome = match resp.status {
                200 if is_continue_false(&resp) => Outcome::Ended,
                200 => Outcome::Refreshed,
                403 if next.is_some() && !retried => {
                    retried = true;
                    challenge = next;
                    continue;
                }
                403 => Outcome::Refused,
                400..=499 => Outcome::Ended,
                _ => Outcome::Transient,
            };
            if matches!(outcome, Outcome::Ended | Outcome::Refused) {
                self.session = None;
            }
            return outcome;
        }
    }

    /// Sends a DBSC request with `jwt` (in this client's [`Form`]) and the jar's cookies,
    /// keeps what it sets, records it.
    async fn exchange(&mut self, mut req: Req, jwt: Option<String>) -> Resp {
        let path = req.path.clone();
        if let Some(j) = &jwt {
            req = req.header(RESPONSE_HEADER, self.form.write(j));
        }
        let resp = self.browser.request(req).await;
        self.exchanges.push(Exchange {
            path,
            signed: jwt.is_some(),
            jwt,
            resp: resp.clone(),
        });
        resp
    }

    /// The statuses of the DBSC requests since `from` (an index into `exchanges`).
    pub fn statuses_since(&self, from: usize) -> Vec<u16> {
        self.exchanges
            .iter()
            .skip(from)
            .map(|e| e.resp.status)
            .collect()
    }
}

/// The session a registration response creates (`None` when it is not a session config).
fn session_from(resp: &Resp, registration_path: &str) -> Option<Session> {
    let config = json_body(resp)?;
    let id = config.get("session_identifier")?.as_str()?.to_owned();
    let refresh_url = config
        .get("refresh_url")
        .and_then(Value::as_str)
        .unwrap_or(registration_path)
        .to_owned();
    let cookie = config
        .get("credentials")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("cookie"))?
        .get("name")?
        .as_str()?
        .to_owned();
    Some(Session {
        challenge: challenge_for(resp, &id),
        id,
        refresh_url,
        cookie,
        config,
    })
}

/// A refresh request as anyone may send it: the session id and the JWT given (bare tokens),
/// no cookies (a [`Browser`] adds its jar's).
pub fn refresh_req(id: Option<&str>, jwt: Option<&str>) -> Req {
    let mut req = Req::post(REFRESH, Vec::new());
    if let Some(id) = id {
        req = req.header(ID_HEADER, id);
    }
    if let Some(jwt) = jwt {
        req = req.header(RESPONSE_HEADER, jwt);
    }
    req
}

/// A registration request: the JWT given, no cookies.
pub fn start_req(jwt: Option<&str>) -> Req {
    let mut req = Req::post(START, Vec::new());
    if let Some(jwt) = jwt {
        req = req.header(RESPONSE_HEADER, jwt);
    }
    req
}

/// `jwt` with its payload replaced by `payload` and its signature kept (a replay over
/// another challenge).
pub fn with_payload(jwt: &str, payload: &Value) -> String {
    let mut parts = jwt.split('.');
    let (h, _, s) = (parts.next(), parts.next(), parts.next());
    format!(
        "{}.{}.{}",
        h.unwrap_or_default(),
        B64.encode(payload.to_string()),
        s.unwrap_or_default()
    )
}

/// Base64url without padding (for hand-made JWT parts).
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    B64.encode(bytes)
}
