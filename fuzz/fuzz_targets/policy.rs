//! The whole request and response decision on arbitrary header bytes, the DBSC endpoints
//! included: never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use session_guard::policy::{decide_request, decide_response, grant_signal, RequestView, ResponseView};

fuzz_target!(|data: &[u8]| {
    let cfg = session_guard::config::parse(
        br#"{"keys":[{"id":"k1","secret":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}],
            "app_cookies":{"extra_names":["a"],"adopt_until":1800000001},"detect":{"client_change":"end"},
            "exempt":{"paths":["/a","/b/"]},"cookie":{"anonymous":"navigate"},
            "dbsc":{"enabled":true,"offer":"authenticated","require_bound_after_s":5}}"#,
        &|_| None,
    )
    .unwrap();
    let mut parts = data.split(|&b| b == 0);
    let path = parts.next().unwrap_or(&[]);
    let cookie = parts.next().unwrap_or(&[]);
    let signal = parts.next().unwrap_or(&[]);
    let subject = parts.next().unwrap_or(&[]);
    let set_cookie = parts.next().unwrap_or(&[]);
    let proof = parts.next().unwrap_or(&[]);
    // Some inputs go to the DBSC endpoints (the fuzzer would rarely spell their paths).
    let flags = data.first().copied().unwrap_or(0);
    let path: &[u8] = match flags & 6 {
        2 => b"/.session-guard/dbsc/start",
        4 => b"/.session-guard/dbsc/refresh",
        _ => path,
    };
    let req = RequestView {
        method: if flags & 8 == 0 { b"GET" } else { b"POST" },
        path: Some(path),
        dbsc_response: Some(proof),
        dbsc_session_id: Some(subject),
        referer: Some(path),
        cookies: vec![cookie],
        authority: Some(subject),
        user_agent: Some(signal),
        accept: Some(set_cookie),
        sec_fetch_mode: Some(subject),
        now: 1_800_000_000,
        debug_logs: true,
        ..Default::default()
    };
    let mut d = decide_request(&cfg, &req, &mut || Some([7; 16]));
    if data.first().is_some_and(|b| b & 1 == 1) {
        let _ = grant_signal(&cfg, &mut d.pending, &mut d.record, &mut || Some([8; 16]));
    }
    let resp = ResponseView {
        signals: vec![signal],
        subjects: vec![subject],
        set_cookies: vec![set_cookie],
        cache_control: Some(std::borrow::Cow::Borrowed(subject)),
        targeted_cache: vec![("cdn-cache-control", set_cookie)],
        status: Some(cookie),
        now: 1_800_000_000,
        debug_logs: true,
        ..Default::default()
    };
    let _ = decide_response(&cfg, &d.pending, &resp);
});
