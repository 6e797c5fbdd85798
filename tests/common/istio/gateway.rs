//! The gateway side: the image built and pulled back as istio-agent does, Envoy's environment
//! as the gateway patch gives it, and the gateway itself with its traffic helpers.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use super::super::{
    cookie_header, send, wasm_path, Envoy, EnvoyBuilder, Recorded, Req, Resp, Upstream,
};
use super::{b64, ecds_bootstrap, repo, str_at, Ecds, IstioNames, TempDir};

// ---------------------------------------------------------------------------------------------
// The image: build it, pull it back as istio-agent does

pub struct Pulled {
    /// The module istio-agent would hand Envoy.
    pub module: PathBuf,
    _dir: TempDir,
}

pub fn run_script(script: &str, args: &[&Path], env: &[(&str, &Path)]) -> String {
    let mut cmd = std::process::Command::new(repo().join(script));
    cmd.args(args).current_dir(repo());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `scripts/image.sh` into a temp archive, then `scripts/image-extract.sh` of the reference in
/// the WasmPlugin's `url` (its tag, or its digest which must be the one image.sh printed).
pub fn build_and_pull(plugin: &Yaml) -> Pulled {
    let dir = TempDir::new("image");
    let archive = dir.path().join("session-guard.oci.tar");
    let wasm = wasm_path();
    let report = run_script(
        "scripts/image.sh",
        &[],
        &[("IMAGE_ARCHIVE", &archive), ("SESSION_GUARD_WASM", &wasm)],
    );
    let field = |name: &str| {
        report
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("image.sh printed no {name}:\n{report}"))
    };
    let (tag, digest) = (field("tag"), field("digest"));

    let url = str_at(plugin, &["spec", "url"]);
    let reference = url.strip_prefix("oci://").expect("an oci:// url");
    let agent_cache = dir.path().join("istio-agent");
    let out = if let Some((_, pinned)) = reference.split_once('@') {
        assert_eq!(
            pinned, digest,
            "the WasmPlugin pins another image than built"
        );
        run_script("scripts/image-extract.sh", &[&archive, &agent_cache], &[])
    } else {
        let url_tag = reference
            .rsplit_once(':')
            .map(|(_, t)| t)
            .filter(|t| !t.contains('/'))
            .unwrap_or_else(|| panic!("{url}: neither a tag nor a digest"));
        assert_eq!(
            url_tag, tag,
            "the WasmPlugin's url names tag {url_tag}, image.sh builds {tag}"
        );
        run_script(
            "scripts/image-extract.sh",
            &[&archive, &agent_cache, Path::new(url_tag)],
            &[],
        )
    };
    let module = PathBuf::from(out.trim());
    assert_eq!(
        std::fs::read(&module).expect("read the pulled module"),
        std::fs::read(&wasm).expect("read the built module"),
        "the module pulled from the image differs from the built one"
    );
    Pulled { module, _dir: dir }
}

// ---------------------------------------------------------------------------------------------
// Envoy's environment

/// The secret each key id gets in Envoy's environment (32 bytes, different per id).
pub fn secret_for(id: &str) -> String {
    let raw = format!("{:-<32}", format!("istio-delivery-test-key-{id}"));
    b64(&raw.as_bytes()[..32])
}

/// Envoy's environment as istio/patches/gateway-patch.yaml + the Secret give it: every HOST variable of
/// `vmConfig.env`, holding the secret of the key whose `secret_env` names it.
pub fn host_env(plugin: &Yaml) -> Vec<(String, String)> {
    let keys = plugin["spec"]["pluginConfig"]["keys"]
        .as_sequence()
        .expect("keys");
    plugin["spec"]["vmConfig"]["env"]
        .as_sequence()
        .expect("vmConfig.env")
        .iter()
        .filter(|e| e["valueFrom"].as_str() == Some("HOST"))
        .map(|e| {
            let name = str_at(e, &["name"]);
            let id = keys
                .iter()
                .find(|k| k["secret_env"].as_str() == Some(name))
                .map_or(name, |k| str_at(k, &["id"]));
            (name.to_owned(), secret_for(id))
        })
        .collect()
}

/// `uptime_current_epoch` of admin `/server_info`, in seconds.
pub async fn uptime_s(envoy: &Envoy) -> f64 {
    let info: Json =
        serde_json::from_slice(&envoy.admin("/server_info").await.body).expect("server_info JSON");
    assert_eq!(info["state"], "LIVE", "{info}");
    assert_eq!(
        info["command_line_options"]["restart_epoch"].as_u64(),
        Some(0),
        "a hot restart happened: {info}"
    );
    info["uptime_current_epoch"]
        .as_str()
        .and_then(|s| s.strip_suffix('s'))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("uptime in {info}"))
}

// ---------------------------------------------------------------------------------------------
// Traffic helpers

pub fn cookie_name(plugin: &Yaml) -> String {
    str_at(plugin, &["spec", "pluginConfig", "cookie", "name"]).to_owned()
}

pub fn trusted_cluster(plugin: &Yaml) -> String {
    let list = plugin["spec"]["pluginConfig"]["signal"]["trusted_clusters"]
        .as_sequence()
        .expect("signal.trusted_clusters");
    assert_eq!(list.len(), 1, "{list:?}");
    list[0].as_str().expect("a cluster name").to_owned()
}

/// GET `path` with the mesh cookie `cookie` (if any); returns the response and what `up` got.
pub async fn get_via(
    envoy: &Envoy,
    up: &Upstream,
    name: &str,
    path: &str,
    cookie: Option<&str>,
) -> (Resp, Recorded) {
    let before = up.count();
    let mut req = Req::get(path);
    if let Some(c) = cookie {
        req = req.header("cookie", cookie_header(&[(name, c), ("theme", "dark")]));
    }
    let resp = send(envoy.port(), req).await;
    assert_eq!(resp.status, 200, "GET {path}: {resp:?}");
    assert_eq!(
        up.count(),
        before + 1,
        "GET {path} did not reach its upstream"
    );
    let got = up.last().expect("recorded");
    if cookie.is_some() {
        assert_eq!(
            got.header_all("cookie"),
            ["theme=dark"],
            "the mesh cookie reached an upstream"
        );
    }
    (resp, got)
}

pub fn session_id(got: &Recorded) -> String {
    got.header("x-session-id")
        .unwrap_or_else(|| panic!("no x-session-id forwarded: {got:?}"))
}

pub struct Gateway {
    pub envoy: Envoy,
    pub ecds: Ecds,
    pub app: Upstream,
    pub auth: Upstream,
    pub api: Upstream,
}

/// Starts the gateway: `initial` is the first ECDS resource, present before Envoy starts.
pub async fn start_gateway(plugin: &Yaml, names: &IstioNames, initial: &Json) -> Gateway {
    let (app, auth, api) = (
        Upstream::start().await,
        Upstream::start().await,
        Upstream::start().await,
    );
    let mut ecds = Ecds::new(&names.resource);
    ecds.write(initial);
    let (resource, file, trusted) = (names.resource.clone(), ecds.file(), trusted_cluster(plugin));
    let mut builder = EnvoyBuilder::shipped("envoy/ingress.yaml")
        .upstream("app", &app)
        .upstream("auth", &auth)
        .upstream("api", &api)
        // Only the variables the gateway patch provides.
        .env_remove("SESSION_GUARD_KEY")
        // Two workers: an update counts as applied only once both have it.
        .concurrency(2)
        .edit(move |root| ecds_bootstrap(root, &resource, &file, &trusted));
    for (name, value) in host_env(plugin) {
        builder = builder.env(&name, &value);
    }
    Gateway {
        envoy: builder.start().await,
        ecds,
        app,
        auth,
        api,
    }
}
