//! Real framework apps (tests/apps/, installed by `make apps-deps`) as child processes, and a
//! [`Browser`]: a client that keeps cookies like a browser does, with an optional cookie an
//! attacker tossed into it.
//!
//! ```ignore
//! let app = App::start(Framework::Express).await;
//! let mut victim = Browser::new(app.port(), Wire::H1).toss("connect.sid", &planted, Toss::First);
//! victim.post_form("/login", "user=victim&password=victim-pass").await;
//! ```

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::{
    lossy, manifest_dir, send, send_h2, tail, unique_dir, Req, Resp, POLL, STARTUP_TIMEOUT,
};

/// A framework with its own session cookie, as shipped in tests/apps/.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framework {
    /// Express 5 + express-session (MemoryStore), cookie `connect.sid`.
    Express,
    /// PHP's session module under `php -S`, Debian's php-cli defaults, cookie `PHPSESSID`.
    Php,
    /// Tomcat 10 (Debian's `tomcat10`), its own `HttpSession`, cookie `JSESSIONID`, cookie and
    /// URL (`;jsessionid=`) tracking; JSPs compiled by Jasper at first use.
    Tomcat,
}

impl Framework {
    /// The framework's own session cookie name (in session-guard's default `app_cookies.names`).
    pub fn cookie(self) -> &'static str {
        match self {
            Framework::Express => "connect.sid",
            Framework::Php => "PHPSESSID",
            Framework::Tomcat => "JSESSIONID",
        }
    }
}

/// The passwords the apps of tests/apps/ accept.
pub const VICTIM_LOGIN: &str = "user=victim&password=victim-pass";

/// The port in Tomcat's `Starting ProtocolHandler ["http-nio-127.0.0.1-auto-1-<port>"]`.
fn tomcat_port(log: &str) -> Option<u16> {
    let line = log
        .lines()
        .find(|l| l.contains("Starting ProtocolHandler"))?;
    let name = line.split('"').nth(1)?;
    name.contains("-auto-").then_some(())?;
    name.rsplit('-').next()?.parse().ok()
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read tests/apps/tomcat") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The first `127.0.0.1:<port>` in what a child printed: how a child that bound port 0 itself
/// reports the port it got.
pub fn reported_port(log: &str) -> Option<u16> {
    const AT: &str = "127.0.0.1:";
    log.match_indices(AT).find_map(|(i, _)| {
        let rest = log.get(i + AT.len()..)?;
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest.get(..end)?.parse().ok().filter(|p| *p != 0)
    })
}

/// A running framework app. Dropping it kills the process and removes its temp dir.
pub struct App {
    child: Child,
    port: u16,
    dir: PathBuf,
    framework: Framework,
}

impl App {
    /// Starts the app on a free port and waits until it accepts connections.
    pub async fn start(framework: Framework) -> App {
        App::start_with_env(framework, &[]).await
    }

    /// [`App::start`] with extra environment variables (e.g. `APP_PREFIX`).
    pub async fn start_with_env(framework: Framework, env: &[(&str, &str)]) -> App {
        if framework == Framework::Tomcat {
            return App::start_tomcat().await;
        }
        let root = manifest_dir();
        // Each app binds port 0 itself and prints the port it got (see `wait_ready`): a port
        // picked here and handed over could be taken by another test in between.
        let mut cmd = match framework {
            Framework::Express => {
                let dir = root.join("tests/apps/express");
                assert!(
                    dir.join("node_modules/express-session").is_dir(),
                    "{}: express-session is not installed (run `make apps-deps`)",
                    dir.display()
                );
                let mut c = Command::new("node");
                c.arg(dir.join("app.js")).arg("0");
                c
            }
            Framework::Tomcat => unreachable!("started by start_tomcat"),
            Framework::Php => {
                let mut c = Command::new("php");
                c.arg("-S")
                    .arg("127.0.0.1:0")
                    .arg(root.join("tests/apps/php/app.php"));
                c
            }
        };
        let dir = unique_dir("app");
        let log = std::fs::File::create(dir.join("app.log")).expect("create app.log");
        cmd.current_dir(&root)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup app.log"))
            .stderr(log)
            .kill_on_drop(true);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("spawn the {framework:?} app: {e} (run `make apps-deps`: node, php-cli)")
        });
        let mut app = App {
            child,
            port: 0,
            dir,
            framework,
        };
        app.wait_ready().await;
        app
    }

    /// Waits until the app has printed the port it bound (`127.0.0.1:<port>`: Express's own
    /// line, PHP's "Development Server (http://127.0.0.1:<port>) started") and accepts on it.
    /// Tomcat with a private `CATALINA_BASE` (tests/apps/tomcat plus Debian's default
    /// `conf/web.xml`), `catalina.sh run` in the foreground. Its connector binds port 0 itself;
    /// the port is read from the startup log line naming the connector after it
    /// (`Starting ProtocolHandler ["http-nio-127.0.0.1-auto-1-43515"]`).
    async fn start_tomcat() -> App {
        let home = PathBuf::from("/usr/share/tomcat10");
        assert!(
            home.join("bin/catalina.sh").is_file(),
            "Debian's tomcat10 is not installed (run `make apps-deps`)"
        );
        let dir = unique_dir("tomcat");
        copy_tree(&manifest_dir().join("tests/apps/tomcat"), &dir);
        std::fs::copy("/etc/tomcat10/web.xml", dir.join("conf/web.xml")).expect("conf/web.xml");
        for d in ["logs", "temp", "work"] {
            std::fs::create_dir_all(dir.join(d)).expect("CATALINA_BASE dirs");
        }
        let log = std::fs::File::create(dir.join("app.log")).expect("create app.log");
        let child = Command::new(home.join("bin/catalina.sh"))
            .arg("run")
            .env("CATALINA_HOME", &home)
            .env("CATALINA_BASE", &dir)
            .env("CATALINA_PID", dir.join("tomcat.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup app.log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn catalina.sh: {e} (run `make apps-deps`)"));
        let mut app = App {
            child,
            port: 0,
            dir,
            framework: Framework::Tomcat,
        };
        // A JVM on a busy machine: more than STARTUP_TIMEOUT.
        let deadline = Instant::now() + STARTUP_TIMEOUT * 6;
        while app.port == 0 {
            if let Some(status) = app.child.try_wait().expect("try_wait tomcat") {
                panic!(
                    "Tomcat exited at startup ({status}): {}",
                    tail(&app.log(), 30)
                );
            }
            assert!(
                Instant::now() < deadline,
                "Tomcat did not start: {}",
                tail(&app.log(), 30)
            );
            app.port = tomcat_port(&app.log()).unwrap_or(0);
            tokio::time::sleep(POLL).await;
        }
        app.wait_ready().await;
        app
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait app") {
                panic!(
                    "the {:?} app exited at startup ({status}); its log:\n{}",
                    self.framework,
                    self.log()
                );
            }
            if self.port == 0 {
                self.port = reported_port(&self.log()).unwrap_or(0);
            }
            if self.port != 0 && TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the {:?} app did not report a port and listen within {STARTUP_TIMEOUT:?}; its \
                 log:\n{}",
                self.framework,
                self.log()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn framework(&self) -> Framework {
        self.framework
    }

    /// What the app printed so far.
    pub fn log(&self) -> String {
        std::fs::read(self.dir.join("app.log"))
            .map(|b| lossy(&b))
            .unwrap_or_default()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let test = std::thread::current().name().unwrap_or("?").to_owned();
            eprintln!(
                "--- {:?} app log tail of test {test} ---\n{}\n--- end of app log ---",
                self.framework,
                tail(&self.log(), 30)
            );
        }
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Which protocol a [`Browser`] speaks (Envoy's listener takes both; the apps only HTTP/1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    H1,
    H2,
}

/// Where the tossed cookie stands in the `Cookie` header (a browser orders by `Path` length,
/// so an attacker picks the order with the `Path` of the cookie it plants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toss {
    First,
    Last,
}

/// Cookies as a browser keeps them for one host: name → value, in order of creation.
/// `Domain`, `Path` and `Secure` are not modelled (every cookie goes on every request).
#[derive(Clone, Debug, Default)]
pub struct Jar {
    pub cookies: Vec<(String, String)>,
}

impl Jar {
    /// Applies every `Set-Cookie` of `resp`: sets or replaces, or deletes on `Max-Age<=0` or an
    /// `Expires` in 1970 (what the frameworks and the mesh send to delete).
    pub fn store(&mut self, resp: &Resp) {
        for line in resp.header_all("set-cookie") {
            let mut parts = line.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
            let deleted = parts.any(|attr| {
                let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
                let (k, v) = (k.trim(), v.trim());
                (k.eq_ignore_ascii_case("max-age") && v.parse::<i64>().is_ok_and(|s| s <= 0))
                    || (k.eq_ignore_ascii_case("expires") && v.contains("1970"))
            });
            self.cookies.retain(|(n, _)| *n != name);
            if !deleted {
                self.cookies.push((name, value));
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.cookies.retain(|(n, _)| n != name);
        self.cookies.push((name.to_owned(), value.to_owned()));
    }

    pub fn remove(&mut self, name: &str) {
        self.cookies.retain(|(n, _)| n != name);
    }
}

/// A client that keeps cookies ([`Jar`]) across requests to one port, plus at most one cookie
/// planted by an attacker (kept apart from the jar, as a `Domain=` cookie is in a browser: the
/// host's own `Set-Cookie` of that name neither replaces nor deletes it).
#[derive(Clone, Debug)]
pub struct Browser {
    pub port: u16,
    pub wire: Wire,
    pub jar: Jar,
    pub tossed: Option<(String, String, Toss)>,
}

impl Browser {
    pub fn new(port: u16, wire: Wire) -> Self {
        Browser {
            port,
            wire,
            jar: Jar::default(),
            tossed: None,
        }
    }

    /// Plants `name=value` in this browser, sent first or last in every `Cookie` header.
    pub fn toss(mut self, name: &str, value: &str, at: Toss) -> Self {
        self.tossed = Some((name.to_owned(), value.to_owned(), at));
        self
    }

    /// The `Cookie` header this browser sends now, if any.
    pub fn cookie_header(&self) -> Option<String> {
        let mut pairs: Vec<String> = self
            .jar
            .cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        if let Some((n, v, at)) = &self.tossed {
            let pair = format!("{n}={v}");
            match at {
                Toss::First => pairs.insert(0, pair),
                Toss::Last => pairs.push(pair),
            }
        }
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    /// Sends `req` with this browser's cookies and keeps what the response sets.
    pub async fn request(&mut self, mut req: Req) -> Resp {
        if let Some(cookie) = self.cookie_header() {
            req = req.header("cookie", cookie);
        }
        let resp = match self.wire {
            Wire::H1 => send(self.port, req).await,
            Wire::H2 => send_h2(self.port, req).await,
        };
        self.jar.store(&resp);
        resp
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        self.request(Req::get(path)).await
    }

    /// POST an `application/x-www-form-urlencoded` body.
    pub async fn post_form(&mut self, path: &str, body: &str) -> Resp {
        let req = Req::post(path, body.as_bytes().to_vec())
            .header("content-type", "application/x-www-form-urlencoded");
        self.request(req).await
    }

    /// The body of `GET path` (e.g. `/me`: the logged-in user or `anonymous`), trimmed.
    pub async fn text(&mut self, path: &str) -> String {
        let resp = self.get(path).await;
        assert_eq!(resp.status, 200, "GET {path}: {}", resp.body_str());
        resp.body_str().trim().to_owned()
    }
}

/// `a=1; b=2` → `[("a", "1"), ("b", "2")]` (for `Cookie` headers an upstream received).
pub fn cookie_pairs(header: &str) -> Vec<(String, String)> {
    header
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (n.to_owned(), v.to_owned())
        })
        .collect()
}
