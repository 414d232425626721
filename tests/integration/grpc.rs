//! gRPC ext_authz: parity with the HTTP adapter (both adapters in-process on one `App`), and a
//! client generated from Envoy's own protos (envoy-types' `AuthorizationClient`, not our
//! adapter code) against the real listener for the edge cases of ext-authz.md checklist 25–42.

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, HeaderValueOption, HttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::{HeaderMap as PbHeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use http_body_util::BodyExt;
use portcullis::app::App;
use portcullis::grpc::AuthzService;
use portcullis::session::Session;
use tonic::transport::{Channel, Endpoint};
use tower::ServiceExt;

use crate::support::TestApp;

const HOST: &str = "app.example.com";
const BROWSER: (&str, &str) = ("accept", "text/html,application/xhtml+xml");
const API: (&str, &str) = ("accept", "application/json");

// -- building requests -------------------------------------------------------------------------

/// One request as a gateway would describe it, sent through either adapter.
#[derive(Clone)]
struct Scenario {
    name: &'static str,
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
}

impl Scenario {
    fn new(
        name: &'static str,
        method: &'static str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> Self {
        let mut h: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        h.push((
            "x-request-id".into(),
            format!("rid-{}", name.replace([' ', '_'], "-")),
        ));
        Self {
            name,
            method,
            target: target.into(),
            headers: h,
        }
    }

    /// What Envoy's HTTP ext_authz sends (no path_prefix): the original method, target, Host.
    fn http(&self) -> http::Request<axum::body::Body> {
        let mut b = http::Request::builder()
            .method(self.method)
            .uri(&self.target)
            .header("host", HOST);
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    /// What Envoy's gRPC ext_authz sends: attributes.request.http with every header (lowercase,
    /// pseudo-headers included, repeated names joined with ",").
    fn grpc(&self) -> CheckRequest {
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in [
            (":authority", HOST),
            (":method", self.method),
            (":path", self.target.as_str()),
            (":scheme", "http"),
        ] {
            headers.insert(k.into(), v.into());
        }
        for (k, v) in &self.headers {
            headers
                .entry(k.to_ascii_lowercase())
                .and_modify(|old| {
                    old.push(',');
                    old.push_str(v)
                })
                .or_insert_with(|| v.clone());
        }
        check_request(HttpRequest {
            id: "1".into(),
            method: self.method.into(),
            host: HOST.into(),
            path: self.target.clone(),
            scheme: "http".into(),
            protocol: "HTTP/1.1".into(),
            headers: headers.into_iter().collect(),
            ..Default::default()
        })
    }
}

fn check_request(http: HttpRequest) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(http),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

// -- what a client (through Envoy) would get, from either adapter -------------------------------

/// The parts of an answer Envoy acts on.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// Headers for the upstream (name → value), names to remove, Set-Cookie lines for the
    /// client.
    Allow {
        upstream: BTreeMap<String, String>,
        remove: Vec<String>,
        set_cookies: Vec<String>,
    },
    /// Status, headers other than set-cookie/content-length, Set-Cookie lines, body.
    Deny {
        status: u16,
        headers: BTreeMap<String, String>,
        set_cookies: Vec<String>,
        body: String,
    },
    /// HTTP 5xx / RPC UNAVAILABLE: Envoy's failure mode applies.
    Error,
}

async fn via_http(app: &Arc<App>, s: &Scenario) -> Seen {
    let resp = portcullis::http::check_router(app.clone())
        .oneshot(s.http())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let set_cookies: Vec<String> = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let mut rest = BTreeMap::new();
    for (n, v) in &headers {
        if n != "set-cookie" && n != "content-length" {
            let prev = rest.insert(
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            );
            assert!(prev.is_none(), "{}: header {n} twice", s.name);
        }
    }
    if status.is_server_error() {
        return Seen::Error;
    }
    if status == 200 {
        let remove = rest
            .remove("x-envoy-auth-headers-to-remove")
            .map(|l| l.split(',').map(|n| n.trim().to_string()).collect())
            .unwrap_or_default();
        // Envoy ignores an allow's content-type and body (checklist 16).
        rest.remove("content-type");
        return Seen::Allow {
            upstream: rest,
            remove,
            set_cookies,
        };
    }
    Seen::Deny {
        status: status.as_u16(),
        headers: rest,
        set_cookies,
        body,
    }
}

/// Also returns the `status.code` for the decision check.
async fn via_grpc(app: &Arc<App>, s: &Scenario) -> (Seen, Option<i32>) {
    let svc = AuthzService::new(app.clone());
    match svc.check(tonic::Request::new(s.grpc())).await {
        Err(status) => {
            assert_eq!(status.code(), tonic::Code::Unavailable, "{}", s.name);
            (Seen::Error, None)
        }
        Ok(resp) => {
            let r = resp.into_inner();
            let code = r.status.as_ref().map(|s| s.code);
            (seen_grpc(s.name, r), code)
        }
    }
}

#[allow(deprecated)] // `append` is checked to be unset
fn options(
    name: &str,
    opts: &[HeaderValueOption],
    set_cookie_action: i32,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut map = BTreeMap::new();
    let mut cookies = Vec::new();
    for o in opts {
        assert_eq!(o.append, None, "{name}: append must stay unset");
        let h = o.header.as_ref().unwrap();
        if h.key == "set-cookie" {
            assert_eq!(
                o.append_action, set_cookie_action,
                "{name}: set-cookie action"
            );
            cookies.push(h.value.clone());
        } else {
            assert_eq!(
                o.append_action, 2,
                "{name}: {} must be OVERWRITE_IF_EXISTS_OR_ADD",
                h.key
            );
            assert!(
                map.insert(h.key.clone(), h.value.clone()).is_none(),
                "{name}: {} twice",
                h.key
            );
        }
    }
    (map, cookies)
}

fn seen_grpc(name: &str, r: CheckResponse) -> Seen {
    let code = r.status.as_ref().expect("status is always explicit").code;
    match r.http_response {
        Some(HttpResponse::OkResponse(ok)) => {
            assert_eq!(code, 0, "{name}");
            let (upstream, none) = options(name, &ok.headers, 0);
            assert!(none.is_empty(), "{name}: set-cookie never goes upstream");
            let (client, set_cookies) = options(name, &ok.response_headers_to_add, 0);
            assert!(client.is_empty(), "{name}: {client:?}");
            Seen::Allow {
                upstream,
                remove: ok.headers_to_remove,
                set_cookies,
            }
        }
        Some(HttpResponse::DeniedResponse(d)) => {
            assert!(code == 7 || code == 16, "{name}: code {code}");
            let status = d.status.unwrap().code;
            let (headers, set_cookies) = options(name, &d.headers, 0);
            Seen::Deny {
                status: u16::try_from(status).unwrap(),
                headers,
                set_cookies,
                body: d.body,
            }
        }
        other => panic!("{name}: unexpected http_response {other:?}"),
    }
}

/// Replace the values that are random per answer (login state, nonce, PKCE challenge, the
/// pending-login cookie's name suffix and value) so two answers can be compared.
fn scrub(seen: Seen) -> Seen {
    let Seen::Deny {
        status,
        mut headers,
        set_cookies,
        body,
    } = seen
    else {
        return seen;
    };
    let mut volatile: Vec<String> = Vec::new();
    if let Some(loc) = headers.get("location") {
        if let Ok(u) = url::Url::parse(loc) {
            for (k, v) in u.query_pairs() {
                if matches!(&*k, "state" | "nonce" | "code_challenge") {
                    volatile.push(v.into_owned());
                }
            }
        }
    }
    for c in &set_cookies {
        let pair = c.split(';').next().unwrap();
        let (n, v) = pair.split_once('=').unwrap();
        // Only a pending login being set is random; expiring one repeats the request's name.
        let expiring = v.is_empty() || c.contains("Max-Age=0");
        if let (Some((_, id)), false) = (n.split_once("_csrf_"), expiring) {
            volatile.push(id.to_string());
            volatile.push(v.to_string());
        }
    }
    let clean = |s: &str| {
        volatile
            .iter()
            .fold(s.to_string(), |acc, v| acc.replace(v.as_str(), "<random>"))
    };
    for v in headers.values_mut() {
        *v = clean(v);
    }
    Seen::Deny {
        status,
        headers,
        set_cookies: set_cookies.iter().map(|c| clean(c)).collect(),
        body: clean(&body),
    }
}

// -- sessions ----------------------------------------------------------------------------------

fn session_cookie(app: &App, user: &str, groups: &[&str]) -> String {
    let now = app.clock.now();
    let s = Session {
        id: format!("sid-{user}"),
        user: user.into(),
        email: format!("{user}@example.com"),
        preferred_username: user.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        id_token: Some("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln".into()),
        access_token: None,
        created_at: now,
        expires_at: now + 3600,
        claims: Default::default(),
        refresh_token: None,
        tokens_expire_at: None,
        refreshed_at: 0,
        subject: String::new(),
        sid: None,
    };
    let input = portcullis::authz::input::CheckInput::new(
        http::Method::GET,
        HOST,
        "/",
        http::HeaderMap::new(),
        "mint".into(),
    );
    app.sessions
        .cookies()
        .save(&s, &input)
        .unwrap()
        .iter()
        .map(|line| line.split(';').next().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn tamper(cookie: &str) -> String {
    let (name, value) = cookie.split_once('=').unwrap();
    let mid = value.len() / 2;
    let flipped = if &value[mid..=mid] == "A" { "B" } else { "A" };
    format!("{name}={}{flipped}{}", &value[..mid], &value[mid + 1..])
}

// -- parity ------------------------------------------------------------------------------------

#[tokio::test]
async fn both_adapters_give_identical_answers() {
    let t = TestApp::start(&["authz.allowed_groups=admins"]).await;
    let app = t.app.clone();
    let alice = session_cookie(&app, "alice", &["admins", "devs"]);
    let bob = session_cookie(&app, "bob", &["devs"]);
    let bad = tamper(&alice);
    let scenarios: Vec<(Scenario, &str)> = vec![
        (
            Scenario::new(
                "valid session",
                "GET",
                "/app/page?x=1&y=%20",
                &[BROWSER, ("cookie", &alice)],
            ),
            "allow",
        ),
        (
            Scenario::new(
                "valid session api",
                "POST",
                "/api/items",
                &[API, ("cookie", &alice)],
            ),
            "allow",
        ),
        (
            Scenario::new(
                "no session browser",
                "GET",
                "/app/page?x=1&y=%20",
                &[BROWSER],
            ),
            "login",
        ),
        (
            Scenario::new("no session api", "GET", "/api/items", &[API]),
            "401",
        ),
        (
            Scenario::new(
                "no session xhr",
                "GET",
                "/api/items",
                &[BROWSER, ("x-requested-with", "XMLHttpRequest")],
            ),
            "401",
        ),
        (
            Scenario::new("wrong group", "GET", "/app", &[BROWSER, ("cookie", &bob)]),
            "403",
        ),
        (
            Scenario::new(
                "tampered cookie",
                "GET",
                "/app",
                &[BROWSER, ("cookie", &bad)],
            ),
            "login",
        ),
        (
            Scenario::new(
                "callback bad state",
                "GET",
                "/oauth2/callback?code=abc&state=nope",
                &[BROWSER, ("cookie", "_portcullis_csrf_bogus=y")],
            ),
            "403",
        ),
        (
            Scenario::new(
                "callback idp error",
                "GET",
                "/oauth2/callback?error=access_denied&state=s",
                &[BROWSER],
            ),
            "403",
        ),
        (
            Scenario::new(
                "sign out",
                "GET",
                "/oauth2/sign_out?rd=%2Fbye",
                &[BROWSER, ("cookie", &alice)],
            ),
            "302",
        ),
        (
            Scenario::new("sign out no session", "GET", "/oauth2/sign_out", &[BROWSER]),
            "302",
        ),
        (
            Scenario::new("start", "GET", "/oauth2/start?rd=%2Fback", &[BROWSER]),
            "login",
        ),
        (
            Scenario::new("sign in page", "GET", "/oauth2/sign_in", &[BROWSER]),
            "401",
        ),
        (
            Scenario::new(
                "userinfo",
                "GET",
                "/oauth2/userinfo",
                &[API, ("cookie", &alice)],
            ),
            "allow",
        ),
        (
            Scenario::new("userinfo no session", "GET", "/oauth2/userinfo", &[API]),
            "401",
        ),
        (
            Scenario::new("unknown own route", "GET", "/oauth2/nope", &[BROWSER]),
            "404",
        ),
        (
            Scenario::new(
                "spoofed identity with session",
                "GET",
                "/app",
                &[
                    BROWSER,
                    ("cookie", &alice),
                    ("x-auth-request-email", "evil@example.com"),
                    ("x-auth-request-user", "mallory"),
                    ("x-auth-request-access-token", "forged"),
                ],
            ),
            "allow",
        ),
        (
            Scenario::new(
                "spoofed identity without session",
                "GET",
                "/app",
                &[BROWSER, ("x-auth-request-email", "alice@example.com")],
            ),
            "login",
        ),
        (
            Scenario::new(
                "head with session",
                "HEAD",
                "/app",
                &[BROWSER, ("cookie", &alice)],
            ),
            "allow",
        ),
        (
            Scenario::new("head without session", "HEAD", "/app?q=1", &[BROWSER]),
            "login",
        ),
        (
            Scenario::new(
                "purge with session",
                "PURGE",
                "/cache/x",
                &[API, ("cookie", &alice)],
            ),
            "allow",
        ),
        (
            Scenario::new("purge without session", "PURGE", "/cache/x", &[API]),
            "401",
        ),
        (
            Scenario::new("options without session", "OPTIONS", "/x", &[BROWSER]),
            "login",
        ),
        (
            Scenario::new("healthz is a check", "GET", "/healthz", &[API]),
            "401",
        ),
        (
            Scenario::new("prefixed lookalike", "GET", "/oauth2x/start", &[BROWSER]),
            "login",
        ),
        (
            Scenario::new(
                "cookie lines joined",
                "GET",
                "/app",
                &[BROWSER, ("cookie", "a=1"), ("cookie", &alice)],
            ),
            "allow",
        ),
    ];
    for (s, want) in &scenarios {
        let h = scrub(via_http(&app, s).await);
        let (g, code) = via_grpc(&app, s).await;
        let g = scrub(g);
        assert_eq!(h, g, "{}: HTTP and gRPC differ", s.name);
        let kind = match (&h, code) {
            (Seen::Allow { .. }, Some(0)) => "allow",
            (
                Seen::Deny {
                    status: 302,
                    headers,
                    ..
                },
                Some(16),
            ) if headers
                .get("location")
                .is_some_and(|l| l.contains("/authorize")) =>
            {
                "login"
            }
            (Seen::Deny { status: 302, .. }, Some(16)) => "302",
            (Seen::Deny { status: 401, .. }, Some(16)) => "401",
            (Seen::Deny { status: 403, .. }, Some(7)) => "403",
            (Seen::Deny { status: 404, .. }, Some(7)) => "404",
            other => panic!("{}: unexpected {other:?}", s.name),
        };
        assert_eq!(kind, *want, "{}: {h:?}", s.name);
        if s.name == "spoofed identity with session" {
            let Seen::Allow {
                upstream, remove, ..
            } = &h
            else {
                unreachable!()
            };
            assert_eq!(upstream["x-auth-request-email"], "alice@example.com");
            assert_eq!(upstream["x-auth-request-user"], "alice");
            assert!(
                remove.contains(&"x-auth-request-access-token".to_string()),
                "{remove:?}"
            );
        }
        if s.method == "HEAD" {
            if let Seen::Deny { body, .. } = &h {
                assert!(body.is_empty(), "{}: HEAD has no body", s.name);
            }
        }
        if *want == "403" && s.name == "wrong group" {
            let Seen::Deny { set_cookies, .. } = &h else {
                unreachable!()
            };
            assert!(!set_cookies.is_empty(), "a refused session is cleared");
        }
    }
    t.stop().await;
}

#[tokio::test]
async fn infrastructure_failure_is_5xx_over_http_and_unavailable_over_grpc() {
    let idp = crate::support::stopped_idp().await;
    let t = TestApp::start_with_issuer(idp, &[], false).await;
    let s = Scenario::new("idp down", "GET", "/app", &[BROWSER]);
    assert_eq!(via_http(&t.app, &s).await, Seen::Error);
    assert_eq!(
        via_grpc(&t.app, &s).await.0,
        Seen::Error,
        "UNAVAILABLE, never a deny or an allow"
    );
    // API callers need no IdP: the same 401 from both.
    let api = Scenario::new("idp down api", "GET", "/app", &[API]);
    assert_eq!(via_http(&t.app, &api).await, via_grpc(&t.app, &api).await.0);
    // Health: the process is alive, the ext_authz service not ready.
    let ch = channel(&t).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
    let st = |svc: &str| tonic_health::pb::HealthCheckRequest {
        service: svc.into(),
    };
    assert_eq!(health.check(st("")).await.unwrap().into_inner().status, 1);
    assert_eq!(
        health
            .check(st(portcullis::grpc::SERVICE_NAME))
            .await
            .unwrap()
            .into_inner()
            .status,
        2,
        "NOT_SERVING until discovery"
    );
    t.stop().await;
}

/// The HTTP adapter's raw answer: status, content-type, body.
async fn http_raw(app: &Arc<App>, s: &Scenario) -> (u16, String, String) {
    let resp = portcullis::http::check_router(app.clone())
        .oneshot(s.http())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ct, String::from_utf8(body.to_vec()).unwrap())
}

/// The gRPC adapter's answer when it must be a denial: (status.code, HTTP status,
/// content-type, body). Panics on an RPC error or an allow.
async fn grpc_denial(app: &Arc<App>, s: &Scenario) -> (i32, u16, String, String) {
    let r = AuthzService::new(app.clone())
        .check(tonic::Request::new(s.grpc()))
        .await
        .unwrap_or_else(|e| panic!("{}: an RPC error ({e:?}), not a page", s.name))
        .into_inner();
    let code = r.status.as_ref().expect("explicit status").code;
    let Some(HttpResponse::DeniedResponse(d)) = r.http_response else {
        panic!(
            "{}: denied_response expected: {:?}",
            s.name, r.http_response
        )
    };
    let ct = d
        .headers
        .iter()
        .filter_map(|o| o.header.as_ref())
        .find(|h| h.key == "content-type")
        .map(|h| h.value.clone())
        .unwrap_or_default();
    let status = u16::try_from(d.status.expect("http status").code).unwrap();
    (code, status, ct, d.body)
}

/// "The login routes answer pages; checks answer decisions". Discovery not done (the IdP was
/// down at start-up): `/oauth2/start` over gRPC is a denial carrying the 503 page (HTML for a
/// browser, JSON for an API client, no body for HEAD) with the HTTP adapter's status and body,
/// so Envoy shows it; an ordinary check's failure stays an RPC error (UNAVAILABLE), for
/// Envoy's failure mode, and the HTTP adapter answers 5xx for both.
#[tokio::test]
async fn login_route_failures_are_pages_over_grpc_checks_stay_errors() {
    let idp = crate::support::stopped_idp().await;
    let t = TestApp::start_with_issuer(idp, &[], false).await;
    for (s, ct) in [
        (
            Scenario::new("start", "GET", "/oauth2/start?rd=/app", &[BROWSER]),
            "text/html",
        ),
        (
            Scenario::new("start api", "GET", "/oauth2/start", &[API]),
            "application/json",
        ),
        (
            Scenario::new("start head", "HEAD", "/oauth2/start", &[BROWSER]),
            "text/html",
        ),
    ] {
        let (code, status, g_ct, g_body) = grpc_denial(&t.app, &s).await;
        assert_eq!((code, status), (14, 503), "{}", s.name);
        assert!(g_ct.starts_with(ct), "{}: {g_ct}", s.name);
        let (h_status, h_ct, h_body) = http_raw(&t.app, &s).await;
        assert_eq!((h_status, h_ct), (503, g_ct), "{}", s.name);
        assert_eq!(
            g_body, h_body,
            "{}: the same page from both adapters",
            s.name
        );
        if s.method == "HEAD" {
            assert!(g_body.is_empty(), "HEAD has no body");
        } else {
            assert!(
                g_body.contains("temporarily unavailable"),
                "{}: {g_body}",
                s.name
            );
        }
    }
    // An ordinary check of an app path needing the same login: an RPC error.
    let s = Scenario::new("app", "GET", "/app", &[BROWSER]);
    let status = AuthzService::new(t.app.clone())
        .check(tonic::Request::new(s.grpc()))
        .await
        .expect_err("an RPC error");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(via_http(&t.app, &s).await, Seen::Error);
    t.stop().await;
}

/// A login half done when the IdP goes away: the browser is back with a code, the token
/// exchange fails. Over gRPC the callback is a denial carrying the 502 page (no session
/// cookie), the HTTP adapter answers the same 502 page.
#[tokio::test]
async fn callback_with_the_idp_gone_is_a_502_page_over_grpc() {
    let mut t = TestApp::start(&[]).await;
    let mut b = crate::support::Browser::new();
    let start = b.get(&t.url("/app")).await;
    assert_eq!(start.status, 302, "{}", start.body);
    let authorize = start.header("location").expect("location").to_string();
    let callback = url::Url::parse(&b.authorize(&authorize, "alice", "").await).unwrap();
    t.idp.stop();
    let target = format!(
        "{}?{}",
        callback.path(),
        callback.query().unwrap_or_default()
    );
    let cookies = b.cookie_header();
    let s = Scenario::new(
        "callback idp gone",
        "GET",
        &target,
        &[BROWSER, ("cookie", cookies.as_str())],
    );
    let (code, status, ct, body) = grpc_denial(&t.app, &s).await;
    assert_eq!((code, status), (14, 502), "{body}");
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(body.contains("identity provider"), "{body}");
    let (h_status, h_ct, h_body) = http_raw(&t.app, &s).await;
    assert_eq!((h_status, h_ct, h_body), (502, ct, body));
    t.stop().await;
}

// -- a client from Envoy's protos against the real listener ------------------------------------

async fn channel(t: &TestApp) -> Channel {
    // Any :authority is accepted: use a service name like Istio's envoy_grpc.authority.
    Endpoint::from_shared(format!("http://{}", t.grpc))
        .unwrap()
        .origin("http://portcullis.auth.svc.cluster.local".parse().unwrap())
        .connect()
        .await
        .unwrap()
}

fn client(ch: Channel) -> AuthorizationClient<Channel> {
    AuthorizationClient::new(ch).max_encoding_message_size(64 * 1024 * 1024)
}

fn denied(r: &CheckResponse) -> (i32, i32, String) {
    match &r.http_response {
        Some(HttpResponse::DeniedResponse(d)) => (
            r.status.as_ref().unwrap().code,
            d.status.as_ref().unwrap().code,
            d.body.clone(),
        ),
        other => panic!("expected denied_response, got {other:?}"),
    }
}

#[tokio::test]
async fn edge_cases_over_the_wire() {
    let t = TestApp::start(&[]).await;
    let mut c = client(channel(&t).await);

    // No request at all, an empty attributes, Istio's TCP check (source/destination only).
    for req in [
        CheckRequest::default(),
        CheckRequest {
            attributes: Some(AttributeContext::default()),
        },
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(Default::default()),
                destination: Some(Default::default()),
                ..Default::default()
            }),
        },
        check_request(HttpRequest::default()),
    ] {
        let r = c
            .check(req)
            .await
            .expect("RPC OK: a denial is not an error")
            .into_inner();
        let (code, status, _) = denied(&r);
        assert_eq!((code, status), (7, 403));
    }

    // header_map only (encode_raw_headers), query in the path.
    let r = c
        .check(check_request(HttpRequest {
            header_map: Some(PbHeaderMap {
                headers: [
                    (":method", "GET"),
                    (":path", "/raw?q=1"),
                    (":authority", "app.example.com"),
                    ("accept", "application/json"),
                    ("x-request-id", "raw-1"),
                ]
                .into_iter()
                .map(|(k, v)| HeaderValue {
                    key: k.into(),
                    raw_value: v.as_bytes().to_vec(),
                    ..Default::default()
                })
                .collect(),
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let (code, status, body) = denied(&r);
    assert_eq!((code, status), (16, 401));
    assert!(body.contains("raw-1"), "{body}");

    // A browser without a session: 302 to the IdP with the return path from `path`.
    // With Envoy's default deadline (grpc-timeout: 200m) the answer comes in time.
    let s = Scenario::new("wire login", "GET", "/p?x=1", &[BROWSER]);
    let mut req = tonic::Request::new(s.grpc());
    req.set_timeout(std::time::Duration::from_millis(200));
    let r = c
        .check(req)
        .await
        .expect("answered within 200 ms")
        .into_inner();
    let (code, status, _) = denied(&r);
    assert_eq!((code, status), (16, 302));

    // 10 MiB of forwarded body: above tonic's 4 MiB default, below our 16 MiB.
    let mut big = Scenario::new("big body", "POST", "/upload", &[API]).grpc();
    if let Some(h) = big
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        h.body = "x".repeat(10 * 1024 * 1024);
        h.size = 10 * 1024 * 1024;
    }
    let r = c.check(big).await.expect("10 MiB accepted").into_inner();
    assert_eq!(denied(&r).1, 401);

    // The v2 service is not served: UNIMPLEMENTED straight away.
    let mut raw = tonic::client::Grpc::new(channel(&t).await);
    raw.ready().await.unwrap();
    let v2: Result<tonic::Response<CheckResponse>, tonic::Status> = raw
        .unary(
            tonic::Request::new(CheckRequest::default()),
            "/envoy.service.auth.v2.Authorization/Check"
                .parse()
                .unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    assert_eq!(v2.unwrap_err().code(), tonic::Code::Unimplemented);

    // grpc.health.v1: SERVING overall and for the ext_authz service once discovered.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(&t).await);
    for svc in ["", portcullis::grpc::SERVICE_NAME] {
        let mut serving = false;
        for _ in 0..50 {
            let st = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: svc.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status;
            if st == 1 {
                serving = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(serving, "health of {svc:?} is SERVING");
    }
    t.stop().await;
}

#[tokio::test]
async fn two_hundred_concurrent_streams_on_one_connection() {
    let t = TestApp::start(&[]).await;
    let alice = session_cookie(&t.app, "alice", &["devs"]);
    let ch = channel(&t).await; // one HTTP/2 connection, multiplexed
    let mut tasks = Vec::new();
    for i in 0..200 {
        let mut c = client(ch.clone());
        let cookie = alice.clone();
        tasks.push(tokio::spawn(async move {
            let with_session = i % 2 == 0;
            let rid = format!("stream-{i}");
            let mut headers = vec![API, ("x-request-id", rid.as_str())];
            if with_session {
                headers.push(("cookie", cookie.as_str()));
            }
            let mut s = Scenario::new("c", "GET", &format!("/s/{i}"), &headers).grpc();
            // Keep the caller's x-request-id (Scenario adds its own after it).
            if let Some(h) = s
                .attributes
                .as_mut()
                .and_then(|a| a.request.as_mut())
                .and_then(|r| r.http.as_mut())
            {
                h.headers.insert("x-request-id".into(), rid.clone());
            }
            let r = c.check(s).await.unwrap().into_inner();
            (i, with_session, rid, r)
        }));
    }
    for task in tasks {
        let (i, with_session, rid, r) = task.await.unwrap();
        if with_session {
            assert_eq!(r.status.as_ref().unwrap().code, 0, "stream {i}");
            let Some(HttpResponse::OkResponse(ok)) = r.http_response else {
                panic!("stream {i}: ok_response expected")
            };
            assert!(ok.headers.iter().any(|h| h
                .header
                .as_ref()
                .is_some_and(|h| h.key == "x-auth-request-user" && h.value == "alice")));
        } else {
            let (code, status, body) = denied(&r);
            assert_eq!((code, status), (16, 401), "stream {i}");
            assert!(
                body.contains(&format!("\"{rid}\"")),
                "stream {i} got another's answer: {body}"
            );
        }
    }
    t.stop().await;
}
