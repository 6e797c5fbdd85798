//! Issue 28, finding 1: a cookie name that the filter does not list but an app's parser does.
//! The app stand-ins below read the `Cookie` header exactly as the named parsers do; each
//! planted crumb is first shown read as the app's session cookie without the mesh (sent to the
//! app directly), then, through Envoy with the built filter, never read: only the value bound
//! to the victim's mesh session reaches the app, whichever order the crumbs come in.
#![cfg(test)]

mod common;
use common::*;

/// Python's `str.isspace` (Django's and Werkzeug's `str.strip()`): Unicode White_Space plus
/// U+001C-U+001F.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Django (`django.http.cookie.parse_cookie`, 2.x-5.x) and Werkzeug >= 2.3: the header as
/// UTF-8, split on `;`, name and value `strip()`ped; the last value of a name wins.
fn django(header: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(header);
    let mut out: Vec<(String, String)> = Vec::new();
    for chunk in text.split(';') {
        let (k, v) = chunk.split_once('=').unwrap_or(("", chunk));
        let (k, v) = (k.trim_matches(py_space), v.trim_matches(py_space));
        out.retain(|(n, _)| n != k);
        out.push((k.to_string(), v.to_string()));
    }
    out
}

/// Python's `http.cookies.SimpleCookie` (Beaker, old Werkzeug): a cookie ends at `;` or ASCII
/// whitespace; the last value wins.
fn simple_cookie(header: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(header);
    let mut out: Vec<(String, String)> = Vec::new();
    for token in text.split(|c: char| c == ';' || c.is_ascii_whitespace()) {
        if let Some((k, v)) = token.split_once('=') {
            out.retain(|(n, _)| n != k);
            out.push((k.to_string(), v.to_string()));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (b[i], hex) {
            (b'%', Some(d)) => {
                out.push(d);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Rack < 2.2 (`Rack::Utils.parse_cookies_header`): split on `;` or `,` and the spaces after,
/// name and value unescaped; the first value of a name wins.
fn rack_old(header: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(header);
    let mut out: Vec<(String, String)> = Vec::new();
    for piece in text.split([';', ',']) {
        let piece = piece.trim_start_matches(' ');
        let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
        let (k, v) = (percent_decode(k), percent_decode(v));
        if !out.iter().any(|(n, _)| *n == k) {
            out.push((k, v));
        }
    }
    out
}

/// PHP < 7.4.11 `$_COOKIE`: split on `;`, leading whitespace skipped, the name URL-decoded,
/// leading spaces dropped, `.` and space become `_`; the first value of a name wins.
fn php_old(header: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(header);
    let mut out: Vec<(String, String)> = Vec::new();
    for piece in text.split(';') {
        let Some((k, v)) = piece.trim_start().split_once('=') else {
            continue;
        };
        let k: String = percent_decode(k)
            .trim_start_matches(' ')
            .chars()
            .map(|c| if c == '.' || c == ' ' { '_' } else { c })
            .collect();
        if !out.iter().any(|(n, _)| *n == k) {
            out.push((k, percent_decode(v)));
        }
    }
    out
}

/// ASP.NET (`HttpCookieCollection`; ASP.NET Core's `RequestCookieCollection` likewise): split
/// on `;`, names `Trim()`med (`Char.IsWhiteSpace`; .NET Framework also trims U+FEFF),
/// compared `OrdinalIgnoreCase` (upper-case mapping: `ſ` is `S`, `ı` is `I`); first wins.
fn aspnet(header: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(header);
    let mut out: Vec<(String, String)> = Vec::new();
    for piece in text.split(';') {
        let (k, v) = piece.split_once('=').unwrap_or(("", piece));
        let k = k.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
        let upper: String = k
            .chars()
            .map(|c| {
                let mut u = c.to_uppercase();
                match (u.next(), u.next()) {
                    (Some(one), None) => one,
                    _ => c,
                }
            })
            .collect();
        if !out.iter().any(|(n, _)| *n == upper) {
            out.push((upper, v.trim().to_string()));
        }
    }
    out
}

type Parser = fn(&[u8]) -> Vec<(String, String)>;

/// What the app reads for `name` (`upper`: the parser compares upper-cased names).
fn reads(parser: Parser, header: &[u8], name: &str, upper: bool) -> Option<String> {
    let want = if upper {
        name.to_uppercase()
    } else {
        name.to_string()
    };
    parser(header)
        .into_iter()
        .find(|(n, _)| *n == want)
        .map(|(_, v)| v)
}

/// (parser, what it is, the app's cookie, the planted crumb)
fn attacks() -> Vec<(Parser, &'static str, &'static str, String)> {
    let p = |parser: Parser, what, name, crumb: &str| (parser, what, name, crumb.to_string());
    vec![
        p(
            django,
            "Django strip U+2000",
            "sessionid",
            "\u{2000}sessionid=EVIL",
        ),
        p(
            django,
            "Django strip U+0085",
            "sessionid",
            "\u{85}sessionid=EVIL",
        ),
        p(
            django,
            "Django strip U+00A0",
            "sessionid",
            "\u{a0}sessionid=EVIL",
        ),
        p(
            django,
            "Django strip U+3000",
            "sessionid",
            "\u{3000}sessionid=EVIL",
        ),
        p(
            django,
            "Django strip U+2029",
            "sessionid",
            "sessionid\u{2029}=EVIL",
        ),
        p(
            simple_cookie,
            "SimpleCookie whitespace",
            "beaker.session.id",
            "a=1 beaker.session.id=EVIL",
        ),
        p(
            rack_old,
            "Rack < 2.2 comma in a name",
            "_session_id",
            "x,_session_id=EVIL",
        ),
        p(
            rack_old,
            "Rack < 2.2 comma in a value",
            "_session_id",
            "a=1, _session_id=EVIL",
        ),
        p(
            rack_old,
            "Rack < 2.2 encoded name",
            "_session_id",
            "_session%5Fid=EVIL",
        ),
        p(
            php_old,
            "PHP < 7.4.11 encoded name",
            "PHPSESSID",
            "PHPSESSI%44=EVIL",
        ),
        p(
            php_old,
            "PHP encoded space",
            "PHPSESSID",
            "%20PHPSESSID=EVIL",
        ),
        p(
            aspnet,
            "ASP.NET long s",
            "ASP.NET_SessionId",
            "ASP.NET_\u{17f}essionId=EVIL",
        ),
        p(
            aspnet,
            "ASP.NET dotless i",
            "ASP.NET_SessionId",
            "ASP.NET_Sess\u{131}onId=EVIL",
        ),
        p(
            aspnet,
            "ASP.NET BOM",
            "ASP.NET_SessionId",
            "\u{feff}ASP.NET_SessionId=EVIL",
        ),
        p(
            aspnet,
            "ASP.NET Core default name",
            ".AspNetCore.Session",
            ".AspNetCore.Session=EVIL",
        ),
        p(
            django,
            "Play default name",
            "PLAY_SESSION",
            "PLAY_SESSION=EVIL",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn crumbs_that_parsers_read_as_the_apps_cookie_never_reach_it_unbound() {
    let m = Mesh::start(
        |_| Reply::ok(),
        |_| Reply::ok(),
        |b| b.component_log_level("wasm:info"),
    )
    .await;
    // The app sets its session cookies (every name the attacks target) on the first visit.
    let names = [
        "sessionid",
        "beaker.session.id",
        "_session_id",
        "PHPSESSID",
        "ASP.NET_SessionId",
        ".AspNetCore.Session",
        "PLAY_SESSION",
    ];
    let list = names.join(",");
    m.app.respond_with(move |r| {
        let mut reply = Reply::ok();
        if r.path_str() == "/start" {
            for n in list.split(',') {
                reply = reply.header("set-cookie", format!("{n}=good; Path=/"));
            }
        }
        reply
    });
    let start = send(m.envoy.port(), Req::get("/start")).await;
    let mesh = set_cookie_value(&start, SESSION_COOKIE).expect("a mesh session with bindings");
    let good: String = names.map(|n| format!("{n}=good")).join("; ");
    let mut removed = 0;
    for (parser, what, name, crumb) in attacks() {
        let upper = what.starts_with("ASP.NET");
        // Control: sent to the app directly, the planted crumb is the app's session cookie.
        send(m.app.port(), Req::get("/me").header("cookie", &crumb)).await;
        let direct = m
            .app
            .last()
            .unwrap()
            .header_bytes("cookie")
            .unwrap()
            .to_vec();
        assert_eq!(
            reads(parser, &direct, name, upper).as_deref(),
            Some("EVIL"),
            "control: {what}"
        );
        // Through the mesh, before and after the victim's bound cookies, HTTP/1.1 and HTTP/2.
        for h2 in [false, true] {
            for header in [format!("{crumb}; {good}"), format!("{good}; {crumb}")] {
                let req =
                    Req::get("/me").header("cookie", format!("{SESSION_COOKIE}={mesh}; {header}"));
                let r = if h2 {
                    send_h2(m.envoy.port(), req).await
                } else {
                    send(m.envoy.port(), req).await
                };
                assert_eq!(r.status, 200, "{what}");
                let rec = m.app.last().unwrap();
                let seen = rec.header_bytes("cookie").unwrap_or_default().to_vec();
                assert_eq!(
                    reads(parser, &seen, name, upper).as_deref(),
                    Some("good"),
                    "{what} (h2={h2}): {}",
                    String::from_utf8_lossy(&seen)
                );
                removed += 1;
            }
        }
    }
    assert_eq!(
        m.envoy.counter("session_guard.app_cookie.unbound").await,
        removed
    );
}
