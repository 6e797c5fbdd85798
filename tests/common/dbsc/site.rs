//! The site of the DBSC tests: the shipped ingress with DBSC on, its auth service, an app, and
//! a client that logged in and registered.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::{registration, DbscClient, Device, Form};
use crate::common::{
    cookie_pairs, set_cookie, EnvoyBuilder, Mesh, Recorded, Reply, Req, Resp, Upstream,
    SESSION_COOKIE, TEST_KEY,
};

/// The bound cookie ("ticket") the mesh issues.
pub const TICKET_COOKIE: &str = "__Host-session-bound";
/// The default `dbsc.path` and its two endpoints.
pub const DBSC_PATH: &str = "/.session-guard/dbsc";
pub const START: &str = "/.session-guard/dbsc/start";
pub const REFRESH: &str = "/.session-guard/dbsc/refresh";

/// The shipped ingress's filter configuration with `"dbsc":{"enabled":true<dbsc>}` and the
/// top-level members `extra` (each string empty or starting with `,`).
pub fn dbsc_config(dbsc: &str, extra: &str) -> String {
    format!(
        r#"{{"keys":[{{"id":"k1","secret_env":"SESSION_GUARD_KEY"}}],"signal":{{"trusted_clusters":["auth"]}},"dbsc":{{"enabled":true{dbsc}}}{extra}}}"#
    )
}

/// The auth service: `/auth/login?user=U` signals a login as U, `/auth/elevate` a privilege
/// change, `/auth/logout` a logout.
pub fn site_auth(r: &Recorded) -> Reply {
    let path = r.path_str();
    let reply = Reply::ok();
    if let Some(user) = path.strip_prefix("/auth/login?user=") {
        reply
            .header("x-session-guard", "login")
            .header("x-session-guard-subject", user)
    } else if path == "/auth/elevate" {
        reply.header("x-session-guard", "privilege")
    } else if path == "/auth/logout" {
        reply.header("x-session-guard", "logout")
    } else {
        reply
    }
}

/// The app: `/set/NAME/VALUE` sets that cookie (`Path=/`), anything else `200 ok`.
pub fn site_app(r: &Recorded) -> Reply {
    let path = r.path_str();
    match path.strip_prefix("/set/").and_then(|p| p.split_once('/')) {
        Some((name, value)) => Reply::ok().header("set-cookie", format!("{name}={value}; Path=/")),
        None => Reply::ok(),
    }
}

/// The shipped ingress (`app`, `auth`, `api`) with `config`, [`site_auth`] and [`site_app`].
pub async fn dbsc_mesh(config: String) -> Mesh {
    dbsc_mesh_tuned(config, |b| b).await
}

/// [`dbsc_mesh`] with `tune` applied to the builder too (workers, environment).
pub async fn dbsc_mesh_tuned(
    config: String,
    tune: impl FnOnce(EnvoyBuilder) -> EnvoyBuilder,
) -> Mesh {
    let m = Mesh::start(
        site_auth,
        |_| Reply::ok(),
        move |b| tune(b.filter_config(config)),
    )
    .await;
    m.app.respond_with(site_app);
    m
}

/// What the app received on its latest request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub id: Option<String>,
    pub subject: Option<String>,
    /// The `Cookie` header's pairs (none: empty).
    pub cookies: Vec<(String, String)>,
}

impl Seen {
    /// Whether no identity reached the app: no session ID, no subject, none of `app_cookies`.
    pub fn anonymous_without(&self, app_cookies: &[&str]) -> bool {
        self.id.is_none()
            && self.subject.is_none()
            && !self
                .cookies
                .iter()
                .any(|(n, _)| app_cookies.contains(&n.as_str()))
    }
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub fn seen(up: &Upstream) -> Seen {
    let r = up.last().expect("a request reached the upstream");
    Seen {
        id: r.header("x-session-id"),
        subject: r.header("x-session-subject"),
        cookies: r
            .header("cookie")
            .map(|c| cookie_pairs(&c))
            .unwrap_or_default(),
    }
}

/// `client` logs in as `user` through `auth`; returns the login response.
pub async fn log_in(client: &mut DbscClient, user: &str) -> Resp {
    let resp = client.get(&format!("/auth/login?user={user}")).await;
    assert_eq!(resp.status, 200, "login: {}", resp.body_str());
    assert!(
        set_cookie(&resp, SESSION_COOKIE).is_some(),
        "the login rotates the mesh session"
    );
    resp
}

/// A browser with DBSC that logged in as `user` and registered the offered session: its
/// requests carry the mesh cookie and a fresh ticket. Asserts that the endpoints answered
/// themselves (the app saw none of it).
pub async fn bound_client(m: &Mesh, user: &str, form: Form) -> DbscClient {
    register_as(m, DbscClient::new(m.envoy.port()).form(form), user).await
}

/// [`bound_client`] for a client the caller prepared (its form, wire, device).
pub async fn register_as(m: &Mesh, mut c: DbscClient, user: &str) -> DbscClient {
    let login = log_in(&mut c, user).await;
    let offer = registration(&login).expect("the login response offers DBSC");
    let before = m.app.count();
    let resp = c.register(&offer).await;
    assert_eq!(resp.status, 200, "registration: {}", resp.body_str());
    assert_eq!(m.app.count(), before, "the endpoint is never forwarded");
    assert!(c.session.is_some(), "a session config: {}", resp.body_str());
    assert!(c.browser.jar.get(TICKET_COOKIE).is_some(), "a ticket");
    c
}

/// A device key's thumbprint as the design defines it: SHA-256("session-guard dbsc key\0" ‖
/// x ‖ y), first 16 bytes.
pub fn thumbprint(device: &Device) -> [u8; 16] {
    let jwk = device.jwk();
    let coord = |c: &str| {
        B64.decode(jwk[c].as_str().expect("a coordinate"))
            .expect("base64url")
    };
    let digest = Sha256::new()
        .chain_update(b"session-guard dbsc key\0")
        .chain_update(coord("x"))
        .chain_update(coord("y"))
        .finalize();
    digest[..16].try_into().expect("16 bytes")
}

/// A ticket made with the site's key ([`TEST_KEY`], id `k1`) in the design's format, written
/// here from the design, not from the filter's code:
/// `t1.k1.<B64(exp BE ‖ thumbprint ‖ session hash)>.<B64(tag)>`, tag = HMAC-SHA256(key,
/// "session-guard dbsc ticket\0" ‖ "t1.k1.<payload>"), first 16 bytes; the session hash names
/// the session it was issued to. What a thief replays after the expiry its cookie jar ignores
/// (with a fresh `exp`: the control that the format is right).
pub fn site_ticket(thumbprint: &[u8; 16], session: &[u8; 8], exp: u64) -> String {
    let mut payload = exp.to_be_bytes().to_vec();
    payload.extend_from_slice(thumbprint);
    payload.extend_from_slice(session);
    let head = format!("t1.k1.{}", B64.encode(payload));
    let tag = site_mac(&[b"session-guard dbsc ticket\0", head.as_bytes()]);
    format!("{head}.{}", B64.encode(&tag[..16]))
}

/// A refresh challenge made with the site's key at time `t`, in the design's format (written
/// from the design): `<t>.<B64(tag)>`, tag = HMAC-SHA256(key, "session-guard dbsc
/// challenge\0" ‖ "f" ‖ thumbprint ‖ t as u64 BE), first 16 bytes. What a JWT signed long ago
/// carries (with `t` now: the control that the format is right).
pub fn site_refresh_challenge(thumbprint: &[u8; 16], t: u64) -> String {
    let tag = site_mac(&[
        b"session-guard dbsc challenge\0",
        b"f",
        thumbprint,
        &t.to_be_bytes(),
    ]);
    format!("{t}.{}", B64.encode(&tag[..16]))
}

/// HMAC-SHA256 under the site's key ([`TEST_KEY`]) of the parts, in order.
fn site_mac(parts: &[&[u8]]) -> Vec<u8> {
    let secret = STANDARD.decode(TEST_KEY).expect("TEST_KEY is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&secret).expect("any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// The signed expiry, thumbprint and session hash of a ticket, once its tag verifies under the
/// site's key.
pub fn open_site_ticket(value: &str) -> Option<(u64, [u8; 16], [u8; 8])> {
    let (head, _) = value.rsplit_once('.')?;
    let bytes = B64.decode(head.strip_prefix("t1.k1.")?).ok()?;
    let exp = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let thumb: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
    let session: [u8; 8] = bytes.get(24..)?.try_into().ok()?;
    (site_ticket(&thumb, &session, exp) == value).then_some((exp, thumb, session))
}
