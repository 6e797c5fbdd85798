//! The site of the DBSC tests: the shipped ingress with DBSC on, its auth service, an app, and
//! a client that logged in and registered.

use super::{registration, DbscClient, Form};
use crate::common::{
    cookie_pairs, set_cookie, Mesh, Recorded, Reply, Req, Resp, Upstream, SESSION_COOKIE,
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

/// The auth service: `/auth/login?user=U` signals a login as U, `/auth/logout` a logout.
pub fn site_auth(r: &Recorded) -> Reply {
    let path = r.path_str();
    let reply = Reply::ok();
    if let Some(user) = path.strip_prefix("/auth/login?user=") {
        reply
            .header("x-session-guard", "login")
            .header("x-session-guard-subject", user)
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
    let m = Mesh::start(site_auth, |_| Reply::ok(), move |b| b.filter_config(config)).await;
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
