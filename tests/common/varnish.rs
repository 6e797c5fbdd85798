//! Varnish (Debian's `varnish`, installed by `make cache-deps`) in front of a port: a real
//! shared cache for the tests of issue 24. Foreground (`-F`), its own `-n` work dir, a VCL the
//! test writes, an admin secret of its own; it binds port 0 and the test reads the bound port
//! from `varnishadm debug.listen_address` (no port is picked and handed over).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use tokio::process::{Child, Command};

use super::{lossy, unique_dir, POLL, STARTUP_TIMEOUT};

/// A running `varnishd`. Dropping it kills the process.
pub struct Varnish {
    _child: Child,
    dir: PathBuf,
    port: u16,
}

impl Varnish {
    /// Starts varnishd with `vcl_body` after a `backend default` pointing at `backend_port`
    /// (the test's Envoy), and waits until its child process listens.
    pub async fn start(backend_port: u16, vcl_body: &str) -> Varnish {
        let dir = unique_dir("varnish");
        let vcl = format!(
            "vcl 4.1;\nbackend default {{ .host = \"127.0.0.1\"; .port = \"{backend_port}\"; }}\n{vcl_body}\n"
        );
        std::fs::write(dir.join("test.vcl"), vcl).expect("write VCL");
        std::fs::write(dir.join("secret"), b"session-guard-test-secret\n").expect("secret");
        let log = std::fs::File::create(dir.join("varnishd.log")).expect("varnishd.log");
        let child = Command::new("varnishd")
            .arg("-F")
            .arg("-n")
            .arg(dir.join("n"))
            .args(["-a", "127.0.0.1:0", "-T", "127.0.0.1:0", "-s", "malloc,32m"])
            .arg("-S")
            .arg(dir.join("secret"))
            .arg("-f")
            .arg(dir.join("test.vcl"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn varnishd: {e} (run `make cache-deps`)"));
        let mut v = Varnish {
            _child: child,
            dir,
            port: 0,
        };
        v.port = v.wait_listening().await;
        v
    }

    async fn wait_listening(&self) -> u16 {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(port) = self.listen_port().await {
                return port;
            }
            assert!(
                Instant::now() < deadline,
                "varnishd did not listen within {STARTUP_TIMEOUT:?}: {}",
                self.log()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// `varnishadm debug.listen_address`: `a0 127.0.0.1 46315`.
    async fn listen_port(&self) -> Option<u16> {
        let out = Command::new("varnishadm")
            .arg("-n")
            .arg(self.dir.join("n"))
            .args(["-t", "2", "debug.listen_address"])
            .output()
            .await
            .ok()?;
        let text = lossy(&out.stdout);
        let line = text.lines().find(|l| l.starts_with("a0 "))?;
        line.split_whitespace().nth(2)?.parse().ok()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log(&self) -> String {
        std::fs::read(self.dir.join("varnishd.log"))
            .map(|b| lossy(&b))
            .unwrap_or_default()
    }
}
