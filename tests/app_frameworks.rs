//! Issue 12's proof with real frameworks: apps that keep their OWN session cookie and do not
//! regenerate it at login (tests/apps/: Express + express-session, `connect.sid`; PHP's session
//! module with Debian's defaults, `PHPSESSID`), behind the real Envoy with the shipped ingress
//! and its default configuration.
//!
//! The attack (the four steps): the attacker visits and gets a genuine app session
//! cookie; it tosses that cookie into the victim's browser (one more entry in the victim's
//! `Cookie`, first or last); the victim logs in through the app's own form; the attacker's cookie
//! is now logged in as the victim. Each framework first shows it succeeding against the app
//! directly, then failing through the mesh: the attacker's `/me` stays `anonymous`, the victim's
//! login works and the victim's later requests stay logged in.
//!
//! Needs `make apps-deps` (node_modules of tests/apps/express, php-cli), `make build`, `make deps`.
#![cfg(test)]

mod common;
use common::*;

const ANONYMOUS: &str = "anonymous";

/// Where the attacker gets its genuine app cookie.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// From the app itself (e.g. before the mesh was deployed, or from a copy of the app).
    Direct,
    /// Through the mesh, as any visitor does.
    Mesh,
}

/// What one run of the attack observed.
struct Outcome {
    login: Resp,
    /// The victim's `/me` right after the login, then again after browsing on.
    victim_me: String,
    victim_me_later: String,
    /// The attacker's `/me`, from the attacker's own browser (its own mesh session, if any).
    attacker_me: String,
    /// Ground truth, from the app with no mesh in between: who the planted session ID is.
    planted_me: String,
}

/// Step 1: the attacker visits `port` and gets a genuine session cookie of `fw`.
async fn genuine_cookie(fw: Framework, port: u16, wire: Wire) -> (Browser, String) {
    let mut attacker = Browser::new(port, wire);
    let resp = attacker.get("/login-form").await;
    assert_eq!(resp.status, 200, "{fw:?} /login-form: {}", resp.body_str());
    let planted = attacker
        .jar
        .get(fw.cookie())
        .unwrap_or_else(|| panic!("{fw:?} set no {} on its first page", fw.cookie()))
        .to_owned();
    (attacker, planted)
}

/// Steps 2 to 4: the victim, browsing `target` (the app itself or Envoy) with `planted` tossed
/// into its cookies at `toss`, logs in; then everyone looks at `/me`.
async fn play(
    fw: Framework,
    app_port: u16,
    target: u16,
    wire: Wire,
    toss: Toss,
    attacker: &mut Browser,
    planted: &str,
) -> Outcome {
    let mut victim = Browser::new(target, wire).toss(fw.cookie(), planted, toss);
    // The victim's own, unrelated cookies: the tossed one stands before or after them.
    victim.jar.set("lang", "en");
    victim.jar.set("theme", "dark");
    let form = victim.get("/login-form").await;
    assert_eq!(
        form.status,
        200,
        "victim's /login-form: {}",
        form.body_str()
    );
    let login = victim.post_form("/login", VICTIM_LOGIN).await;
    let victim_me = victim.text("/me").await;
    victim.get("/login-form").await;
    let victim_me_later = victim.text("/me").await;
    let attacker_me = attacker.text("/me").await;
    let mut oracle = Browser::new(app_port, Wire::H1);
    oracle.jar.set(fw.cookie(), planted);
    let planted_me = oracle.text("/me").await;
    Outcome {
        login,
        victim_me,
        victim_me_later,
        attacker_me,
        planted_me,
    }
}

fn assert_attack_worked(o: &Outcome, what: &str) {
    assert_eq!(o.login.status, 200, "{what}: login: {}", o.login.body_str());
    assert_eq!(o.victim_me, "victim", "{what}");
    assert_eq!(
        o.attacker_me, "victim",
        "{what}: without the mesh the planted session must become the victim's (else this \
         test proves nothing)"
    );
    assert_eq!(o.planted_me, "victim", "{what}");
}

fn assert_attack_failed(o: &Outcome, what: &str) {
    assert_eq!(o.login.status, 200, "{what}: login: {}", o.login.body_str());
    assert_eq!(o.login.body_str().trim(), "logged in as victim", "{what}");
    assert_eq!(o.victim_me, "victim", "{what}: the victim's login works");
    assert_eq!(o.victim_me_later, "victim", "{what}: and stays logged in");
    assert_eq!(o.attacker_me, ANONYMOUS, "{what}: the attacker's /me");
    assert_eq!(
        o.planted_me, ANONYMOUS,
        "{what}: the planted session ID never became the victim's"
    );
}

/// The attack, straight against the app: it must work (both orders of the tossed cookie).
async fn attack_succeeds_without_the_mesh(fw: Framework) {
    let app = App::start(fw).await;
    for toss in [Toss::First, Toss::Last] {
        direct_attack_works(fw, app.port(), toss).await;
    }
}

/// One tossed-cookie attack straight against the app on `port`: it must succeed.
async fn direct_attack_works(fw: Framework, port: u16, toss: Toss) {
    let (mut attacker, planted) = genuine_cookie(fw, port, Wire::H1).await;
    let o = play(fw, port, port, Wire::H1, toss, &mut attacker, &planted).await;
    assert_attack_worked(&o, &format!("{fw:?} direct, tossed {toss:?}"));
}

/// The same app behind the shipped ingress (default configuration): first the attack against
/// the app directly works, then through the mesh it fails, for each source of the attacker's
/// cookie and each order of the tossed cookie.
async fn attack_fails_through_the_mesh(fw: Framework, wire: Wire) {
    let app = App::start(fw).await;
    let envoy = EnvoyBuilder::shipped("envoy/ingress.yaml")
        .upstream_port("app", app.port())
        .start()
        .await;
    for toss in [Toss::First, Toss::Last] {
        direct_attack_works(fw, app.port(), toss).await;
        for source in [Source::Direct, Source::Mesh] {
            let what = format!("{fw:?} through the mesh ({wire:?}), {source:?} cookie, {toss:?}");
            let (mut attacker, planted) = match source {
                Source::Direct => genuine_cookie(fw, app.port(), Wire::H1).await,
                Source::Mesh => genuine_cookie(fw, envoy.port(), wire).await,
            };
            let o = play(
                fw,
                app.port(),
                envoy.port(),
                wire,
                toss,
                &mut attacker,
                &planted,
            )
            .await;
            assert_attack_failed(&o, &what);
        }
    }
    assert!(envoy.counter("session_guard.app_cookie.bound").await >= 4);
    assert!(envoy.counter("session_guard.app_cookie.unbound").await >= 8);
    let log = envoy.log();
    assert!(!log.contains("panicked"), "the filter panicked");
}

#[tokio::test(flavor = "multi_thread")]
async fn express_attack_succeeds_without_the_mesh() {
    attack_succeeds_without_the_mesh(Framework::Express).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn php_attack_succeeds_without_the_mesh() {
    attack_succeeds_without_the_mesh(Framework::Php).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn express_attack_fails_through_the_mesh_http1() {
    attack_fails_through_the_mesh(Framework::Express, Wire::H1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn express_attack_fails_through_the_mesh_http2() {
    attack_fails_through_the_mesh(Framework::Express, Wire::H2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn php_attack_fails_through_the_mesh_http1() {
    attack_fails_through_the_mesh(Framework::Php, Wire::H1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn php_attack_fails_through_the_mesh_http2() {
    attack_fails_through_the_mesh(Framework::Php, Wire::H2).await;
}

/// The app's own pre-login session survives through the mesh (its cookie was bound when the
/// app set it), and the app's logout deletes its cookie, which ends the binding: the old value
/// no longer passes, even with the same mesh session.
#[tokio::test(flavor = "multi_thread")]
async fn express_session_lives_through_the_mesh_and_logout_releases_it() {
    let fw = Framework::Express;
    let app = App::start(fw).await;
    let envoy = EnvoyBuilder::shipped("envoy/ingress.yaml")
        .upstream_port("app", app.port())
        .start()
        .await;
    let mut user = Browser::new(envoy.port(), Wire::H1);
    user.get("/login-form").await;
    let first = user.jar.get(fw.cookie()).expect("connect.sid").to_owned();
    assert!(user.jar.get(SESSION_COOKIE).is_some(), "the mesh cookie");
    user.get("/login-form").await;
    assert_eq!(
        user.jar.get(fw.cookie()),
        Some(first.as_str()),
        "the bound cookie reached the app: it kept its session, set no new cookie"
    );
    let login = user.post_form("/login", VICTIM_LOGIN).await;
    assert_eq!(login.status, 200, "{}", login.body_str());
    assert_eq!(user.text("/me").await, "victim");
    let out = user.post_form("/logout", "").await;
    assert_eq!(out.status, 200);
    assert_eq!(
        user.jar.get(fw.cookie()),
        None,
        "the app deleted its cookie"
    );
    envoy
        .wait_counter("session_guard.app_cookie.released", 1)
        .await;
    // A stale copy of the deleted value, with the same mesh session, is removed now.
    let unbound = envoy.counter("session_guard.app_cookie.unbound").await;
    user.jar.set(fw.cookie(), &first);
    assert_eq!(user.text("/me").await, ANONYMOUS);
    assert_eq!(
        envoy.counter("session_guard.app_cookie.unbound").await,
        unbound + 1
    );
    // The app starts a new session for it, bound in turn; the user can log in again.
    assert_ne!(user.jar.get(fw.cookie()), Some(first.as_str()));
    user.post_form("/login", VICTIM_LOGIN).await;
    assert_eq!(user.text("/me").await, "victim");
}

#[tokio::test(flavor = "multi_thread")]
async fn tomcat_attack_succeeds_without_the_mesh() {
    attack_succeeds_without_the_mesh(Framework::Tomcat).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tomcat_attack_fails_through_the_mesh_http1() {
    attack_fails_through_the_mesh(Framework::Tomcat, Wire::H1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tomcat_attack_fails_through_the_mesh_http2() {
    attack_fails_through_the_mesh(Framework::Tomcat, Wire::H2).await;
}

/// The classic JSESSIONID fixation: the attacker sends the victim a link carrying its own
/// session in the URL (`;jsessionid=`, Tomcat's URL tracking); the victim logs in through it.
/// Returns what the attacker's own cookie is worth afterwards (asked of the app directly).
async fn jsessionid_link_attack(app_port: u16, target: u16, wire: Wire) -> String {
    let fw = Framework::Tomcat;
    let (mut attacker, planted) = genuine_cookie(fw, app_port, Wire::H1).await;
    let mut victim = Browser::new(target, wire);
    let form = victim
        .get(&format!("/login-form;jsessionid={planted}"))
        .await;
    assert_eq!(form.status, 200, "{}", form.body_str());
    let login = victim
        .post_form(&format!("/login;jsessionid={planted}"), VICTIM_LOGIN)
        .await;
    assert_eq!(login.body_str().trim(), "logged in as victim");
    attacker.text("/me").await
}

#[tokio::test(flavor = "multi_thread")]
async fn tomcat_jsessionid_link_succeeds_directly_and_fails_through_the_mesh() {
    let app = App::start(Framework::Tomcat).await;
    let direct = jsessionid_link_attack(app.port(), app.port(), Wire::H1).await;
    assert_eq!(
        direct, "victim",
        "without the mesh the link fixes the session"
    );
    let envoy = EnvoyBuilder::shipped("envoy/ingress.yaml")
        .upstream_port("app", app.port())
        .start()
        .await;
    for wire in [Wire::H1, Wire::H2] {
        let through = jsessionid_link_attack(app.port(), envoy.port(), wire).await;
        assert_eq!(
            through, ANONYMOUS,
            "{wire:?}: the planted session stays anonymous"
        );
    }
    assert!(envoy.counter("session_guard.url.stripped").await >= 4);
}
