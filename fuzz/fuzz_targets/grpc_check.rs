//! gRPC ext_authz: a `CheckRequest` (structured, or raw protobuf bytes) through
//! `grpc::convert::to_input`, `authz::check` and `convert::render`. Invariants: a malformed
//! request is a 403 denial; otherwise `portcullis_fuzz::assert_invariants`; an allow renders as
//! `status.code = 0` with an `ok_response`, anything else never does.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use libfuzzer_sys::fuzz_target;
use portcullis::authz::decision::Outcome;
use portcullis::grpc::convert;
use portcullis_fuzz::{assemble, assert_invariants, Answer, Env, Piece, HEADER_NAMES};
use prost::Message;

#[derive(Debug, Arbitrary)]
enum Input {
    Raw(Vec<u8>),
    Structured(Structured),
}

#[derive(Debug, Arbitrary)]
struct Structured {
    method: String,
    path: Vec<Piece>,
    host: String,
    scheme: String,
    query: String,
    /// Headers in `headers` (map) or in `header_map` (`raw_value`), as Envoy may send either.
    in_header_map: bool,
    headers: Vec<(u8, String)>,
    raw_headers: Vec<(String, Vec<u8>)>,
    cookies: Vec<(String, String)>,
    session: bool,
    principal: String,
    no_http: bool,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env::new(&[]))
}

fn build(s: &Structured, env: &Env) -> CheckRequest {
    let mut pairs: Vec<(String, Vec<u8>)> = s
        .headers
        .iter()
        .map(|(i, v)| {
            let name = HEADER_NAMES[usize::from(*i) % HEADER_NAMES.len()];
            (name.to_string(), v.clone().into_bytes())
        })
        .chain(s.raw_headers.iter().cloned())
        .collect();
    let mut cookie: Vec<String> = s.cookies.iter().map(|(n, v)| format!("{n}={v}")).collect();
    if s.session {
        cookie.insert(0, env.session_cookie.clone());
    }
    if !cookie.is_empty() {
        pairs.push(("cookie".into(), cookie.join("; ").into_bytes()));
    }
    let mut http = HttpRequest {
        method: s.method.clone(),
        path: assemble(&s.path),
        host: s.host.clone(),
        scheme: s.scheme.clone(),
        query: s.query.clone(),
        ..Default::default()
    };
    if s.in_header_map {
        http.header_map = Some(HeaderMap {
            headers: pairs
                .into_iter()
                .map(|(key, raw_value)| HeaderValue {
                    key,
                    raw_value,
                    ..Default::default()
                })
                .collect(),
        });
    } else {
        // The map holds one value per name; Envoy joins repeats with ",".
        for (k, v) in pairs {
            let v = String::from_utf8_lossy(&v).into_owned();
            http.headers
                .entry(k)
                .and_modify(|e: &mut String| {
                    e.push(',');
                    e.push_str(&v)
                })
                .or_insert(v);
        }
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                principal: s.principal.clone(),
                ..Default::default()
            }),
            request: (!s.no_http).then_some(Request {
                http: Some(http),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fuzz_target!(|input: Input| {
    let env = env();
    let (request, session) = match &input {
        Input::Raw(bytes) => match CheckRequest::decode(bytes.as_slice()) {
            Ok(r) => (r, false),
            Err(_) => return,
        },
        Input::Structured(s) => (build(s, env), s.session),
    };
    let input_ = match convert::to_input(request) {
        Ok(i) => i,
        Err(m) => {
            let r = m.reply();
            assert_eq!(r.status().as_u16(), 403);
            let resp = convert::render(Outcome::Reply(r), false).expect("a 403 renders");
            assert_eq!(resp.status.map(|s| s.code), Some(7));
            return;
        }
    };
    let header_rule_ok = input_.header("x-ext-authz") == Some("allow");
    let head = input_.method == http::Method::HEAD;
    let outcome = env.check(&input_);
    let (allowed, status, headers) = match &outcome {
        Ok(Outcome::Allow(a)) => (true, 200, a.headers.clone()),
        Ok(Outcome::Reply(r)) => (false, r.status().as_u16(), r.headers.clone()),
        Err(e) => (false, e.status().as_u16(), Vec::new()),
    };
    if let Ok(o) = outcome {
        match convert::render(o, head) {
            Ok(resp) => {
                let code = resp.status.map(|s| s.code).unwrap_or(0);
                assert_eq!(
                    allowed,
                    code == 0,
                    "render changed allow/deny (code {code})"
                );
            }
            Err(_) => assert!(
                !allowed && status >= 500,
                "an allow rendered as an RPC error"
            ),
        }
    }
    let answer = Answer {
        allowed,
        status,
        headers: headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect(),
    };
    let has_session = session || input_.header("cookie").is_some();
    assert_invariants(
        &input_.path,
        has_session,
        header_rule_ok,
        &answer,
        &input_.path,
    );
});
