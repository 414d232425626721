//! HTTP ext_authz check parsing and the whole decision: method, request-target, Host, headers
//! and cookies as Envoy would forward them (with `server.path_prefix = /authz`), through
//! `ext_authz::to_input`, `authz::check` and `render`. Invariants: `portcullis_fuzz::assert_invariants`.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use portcullis::authz::decision::Outcome;
use portcullis::http::ext_authz;
use portcullis_fuzz::{assemble, assert_invariants, header_map, Answer, Env, Piece};

#[derive(Debug, Arbitrary)]
struct Input {
    method: Method,
    /// Whether Envoy put the configured prefix in front.
    prefixed: bool,
    path: Vec<Piece>,
    query: Option<String>,
    headers: Vec<(u8, Vec<u8>)>,
    raw_headers: Vec<(String, Vec<u8>)>,
    cookies: Vec<(String, String)>,
    /// Put the valid session's cookies in (before, after or not at all).
    session: Option<bool>,
}

#[derive(Debug, Arbitrary)]
enum Method {
    Get,
    Head,
    Post,
    Options,
    Raw(Vec<u8>),
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env::new(&["server.path_prefix=/authz"]))
}

fuzz_target!(|input: Input| {
    let env = env();
    let method = match &input.method {
        Method::Get => b"GET".to_vec(),
        Method::Head => b"HEAD".to_vec(),
        Method::Post => b"POST".to_vec(),
        Method::Options => b"OPTIONS".to_vec(),
        Method::Raw(m) => m.clone(),
    };
    let path = assemble(&input.path);
    let mut target = if input.prefixed {
        format!("/authz{path}")
    } else {
        path.clone()
    };
    if let Some(q) = &input.query {
        target.push('?');
        target.push_str(q);
    }
    let mut headers = header_map(&input.headers, &input.raw_headers);
    let mut cookie: Vec<String> = input
        .cookies
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    match input.session {
        Some(true) => cookie.insert(0, env.session_cookie.clone()),
        Some(false) => cookie.push(env.session_cookie.clone()),
        None => {}
    }
    if !cookie.is_empty() {
        if let Ok(v) = http::HeaderValue::from_str(&cookie.join("; ")) {
            headers.append(http::header::COOKIE, v);
        }
    }
    let Ok(request) = http::Request::builder()
        .method(method.as_slice())
        .uri(target.as_str())
        .body(())
    else {
        return;
    };
    let (mut parts, ()) = request.into_parts();
    parts.headers = headers;
    let head = parts.method == http::Method::HEAD;
    let uri = parts.uri.clone();
    let input_ = ext_authz::to_input(&env.app, parts);
    let header_rule_ok = input_.header("x-ext-authz") == Some("allow");
    let outcome = env.check(&input_);
    let (allowed, status) = match &outcome {
        Ok(Outcome::Allow(_)) => (true, 200),
        Ok(Outcome::Reply(r)) => (false, r.status().as_u16()),
        Err(e) => (false, e.status().as_u16()),
    };
    let response = match outcome {
        Ok(o) => ext_authz::render(o, head),
        Err(e) => ext_authz::render(Outcome::Reply(env.app.error_reply(&e, &input_)), head),
    };
    assert_eq!(
        allowed,
        response.status() == 200,
        "render changed allow/deny"
    );
    let answer = Answer {
        allowed,
        status,
        headers: response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect(),
    };
    // The path the rules judge: the request-target after the prefix, before the query. A
    // target without the prefix must never be allowed (gateway and portcullis disagree).
    let judged = if let Some(rest) = uri.path().strip_prefix("/authz") {
        if rest.is_empty() || rest.starts_with('/') {
            rest.to_string()
        } else {
            uri.path().to_string()
        }
    } else {
        assert!(
            !allowed,
            "allowed a check without the configured path prefix: {target:?}"
        );
        uri.path().to_string()
    };
    let has_session = input.session.is_some();
    assert_invariants(&judged, has_session, header_rule_ok, &answer, &target);
});
