//! [`Mesh`]: the shipped ingress (`envoy/ingress.yaml`) in front of its three upstreams, the
//! fixture of the rotation and observability tests.

use super::{send, set_cookie_value, Envoy, EnvoyBuilder, Recorded, Reply, Req, Resp, Upstream};

/// The mesh session cookie of the shipped configurations (the contract's default name).
pub const SESSION_COOKIE: &str = "__Host-session";

/// The shipped ingress with a recording upstream behind each of its clusters: `app`, `auth`
/// (the only cluster allowed to signal) and `api`.
pub struct Mesh {
    pub app: Upstream,
    pub auth: Upstream,
    pub api: Upstream,
    pub envoy: Envoy,
}

impl Mesh {
    /// Starts the upstreams, scripts `auth` and `api` (before Envoy starts, so no request
    /// ever meets the default answer), lets `tune` adjust the builder (filter configuration,
    /// log levels, ...) and starts Envoy. `app` answers `200 ok`.
    pub async fn start(
        auth: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
        api: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
        tune: impl FnOnce(EnvoyBuilder) -> EnvoyBuilder,
    ) -> Mesh {
        let (app, auth_up, api_up) = (
            Upstream::start().await,
            Upstream::start().await,
            Upstream::start().await,
        );
        auth_up.respond_with(auth);
        api_up.respond_with(api);
        let builder = EnvoyBuilder::shipped("envoy/ingress.yaml")
            .upstream("app", &app)
            .upstream("auth", &auth_up)
            .upstream("api", &api_up);
        let envoy = tune(builder).start().await;
        Mesh {
            app,
            auth: auth_up,
            api: api_up,
            envoy,
        }
    }

    /// GET `path`, with the mesh cookie set to `cookie` if given.
    pub async fn get(&self, path: &str, cookie: Option<&str>) -> Resp {
        let mut req = Req::get(path);
        if let Some(c) = cookie {
            req = req.header("cookie", format!("{SESSION_COOKIE}={c}"));
        }
        send(self.envoy.port(), req).await
    }

    /// Who the app thinks this cookie is: (x-session-id, x-session-subject).
    pub async fn whoami(&self, cookie: &str) -> (String, Option<String>) {
        self.get("/whoami", Some(cookie)).await;
        let r = self.app.last().unwrap();
        (
            r.header("x-session-id").unwrap(),
            r.header("x-session-subject"),
        )
    }

    /// A fresh anonymous session: the cookie value the mesh mints for a request without one.
    pub async fn new_session(&self) -> String {
        set_cookie_value(&self.get("/", None).await, SESSION_COOKIE).unwrap()
    }
}
