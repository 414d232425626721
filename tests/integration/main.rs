//! The integration binary: the whole app on ephemeral loopback ports against the in-process
//! development issuer (a real OIDC issuer as far as the proxy can tell).

#![allow(clippy::unwrap_used)]

mod bearer;
mod cli;
mod forward;
mod grpc;
mod limits;
#[cfg(feature = "otlp")]
mod otlp;
mod refresh;
mod sessions;
mod support;

use support::{Browser, TestApp};

#[tokio::test]
async fn full_login_then_allow_with_identity_headers() {
    let t = TestApp::start(&[]).await;
    let mut b = Browser::new();
    let cb = b
        .login(&t.url("/app/page?x=1&y=%20"), "alice", "admins,devs")
        .await;
    assert_eq!(cb.status, 302, "{}", cb.body);
    assert_eq!(cb.header("location"), Some("/app/page?x=1&y=%20"));
    assert!(b.jar.contains_key("_portcullis"), "session cookie set");
    assert!(
        !b.jar.keys().any(|k| k.contains("_csrf_")),
        "pending-login cookie cleared: {:?}",
        b.jar.keys()
    );

    let allowed = b.get(&t.url("/app/page?x=1&y=%20")).await;
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.header("x-auth-request-user"), Some("alice"));
    assert_eq!(
        allowed.header("x-auth-request-email"),
        Some("alice@example.com")
    );
    assert_eq!(
        allowed.header("x-auth-request-preferred-username"),
        Some("alice")
    );
    assert_eq!(allowed.header("x-auth-request-groups"), Some("admins,devs"));
    assert_eq!(allowed.header("authorization"), None);

    let info = b.get(&t.url("/oauth2/userinfo")).await;
    assert_eq!(info.status, 200);
    let v: serde_json::Value = serde_json::from_str(&info.body).unwrap();
    assert_eq!(v["email"], "alice@example.com");
    assert_eq!(v["groups"], serde_json::json!(["admins", "devs"]));
    t.stop().await;
}

#[tokio::test]
async fn optional_headers_access_token_and_authorization() {
    let t = TestApp::start(&[
        "headers.pass_access_token=true",
        "headers.set_authorization_header=true",
    ])
    .await;
    let mut b = Browser::new();
    assert_eq!(b.login(&t.url("/"), "bob", "").await.status, 302);
    let a = b.get(&t.url("/")).await;
    assert_eq!(a.status, 200);
    assert!(a
        .header("x-auth-request-access-token")
        .is_some_and(|v| !v.is_empty()));
    let authz = a.header("authorization").unwrap();
    assert!(authz.starts_with("Bearer ey"), "{authz}");
    assert_eq!(
        a.header("x-auth-request-groups"),
        Some(""),
        "present even when empty"
    );
    assert_eq!(a.header("x-envoy-auth-headers-to-remove"), None);
    t.stop().await;
}

#[tokio::test]
async fn no_session_browser_redirects_api_gets_401_json() {
    let t = TestApp::start(&[]).await;
    let mut b = Browser::new();
    let r = b.get(&t.url("/private")).await;
    assert_eq!(r.status, 302);
    let loc = r.header("location").unwrap();
    for part in [
        "response_type=code",
        "code_challenge_method=S256",
        "state=",
        "nonce=",
        "redirect_uri=http%3A%2F%2F127.0.0.1%3A",
        "%2Foauth2%2Fcallback",
    ] {
        assert!(loc.contains(part), "{part} missing in {loc}");
    }
    assert!(loc.starts_with(&t.idp.issuer));

    for headers in [
        vec![("accept", "application/json")],
        vec![],
        vec![
            ("accept", "text/html"),
            ("x-requested-with", "XMLHttpRequest"),
        ],
        vec![("accept", "text/html"), ("sec-fetch-mode", "cors")],
    ] {
        let r = Browser::new()
            .send(reqwest::Method::GET, &t.url("/api/things"), &headers)
            .await;
        assert_eq!(r.status, 401, "{headers:?}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["error"], "unauthorized");
    }
    t.stop().await;
}

#[tokio::test]
async fn tampered_wrong_key_and_expired_cookies_are_no_session() {
    let t = TestApp::start(&[]).await;
    let mut b = Browser::new();
    b.login(&t.url("/"), "alice", "").await;
    let good = b.jar["_portcullis"].clone();

    let mut flipped = good.clone().into_bytes();
    let mid = flipped.len() / 2;
    flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
    for bad in [
        String::from_utf8(flipped).unwrap(),
        good[..good.len() - 5].to_string(),
        "garbage".to_string(),
        String::new(),
        "A".repeat(10_000),
    ] {
        let mut other = Browser::new();
        other.jar.insert("_portcullis".into(), bad);
        let r = other.get(&t.url("/x")).await;
        assert_eq!(r.status, 302, "treated as no session");
    }

    // The same cookie under another instance's key.
    let t2 = TestApp::start(&[]).await;
    let mut other = Browser::new();
    other.jar.insert("_portcullis".into(), good.clone());
    assert_eq!(other.get(&t2.url("/x")).await.status, 302);
    t2.stop().await;
    t.stop().await;
}

#[tokio::test]
async fn key_rotation_keeps_sessions() {
    let old = TestApp::start(&[]).await;
    let mut b = Browser::new();
    b.login(&old.url("/"), "alice", "").await;
    let old_key = old.key.to_base64();
    old.stop().await;

    let rotated = TestApp::start(&[&format!("cookie.previous_secrets={old_key}")]).await;
    assert_eq!(
        b.get(&rotated.url("/")).await.status,
        200,
        "old key still opens"
    );
    rotated.stop().await;
}

#[tokio::test]
async fn envoy_style_comma_joined_cookies_parse() {
    let t = TestApp::start(&[]).await;
    let mut b = Browser::new();
    b.login(&t.url("/"), "alice", "").await;
    let session = b.jar["_portcullis"].clone();
    let r = reqwest::Client::new()
        .get(t.url("/x"))
        .header("cookie", format!("other=1,_portcullis={session},more=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    t.stop().await;
}

#[tokio::test]
async fn groups_and_email_domains_are_enforced() {
    let t = TestApp::start(&["authz.allowed_groups=admins"]).await;
    let mut b = Browser::new();
    let cb = b.login(&t.url("/deep/page?x=1"), "eve", "devs").await;
    assert_eq!(cb.status, 403);
    assert!(cb.body.contains("Access denied"));
    // "Try again" and "Use a different account" both go back to the page first asked for.
    let body = cb.body.replace("&#x2f;", "/");
    assert!(
        body.contains("href=\"/oauth2/start?rd=/deep/page%3Fx%3D1\""),
        "{body}"
    );
    assert!(
        body.contains("href=\"/oauth2/start?rd=/deep/page%3Fx%3D1&amp;prompt=login\""),
        "{body}"
    );
    let r = b.get(&t.url("/oauth2/start?rd=/deep&prompt=login")).await;
    assert!(
        r.header("location").unwrap().contains("prompt=login"),
        "the IdP is asked to show its login form"
    );
    assert!(
        !b.jar.contains_key("_portcullis"),
        "no session for a refused user"
    );

    let mut ok = Browser::new();
    assert_eq!(
        ok.login(&t.url("/"), "ann", "devs,admins").await.status,
        302
    );
    assert_eq!(ok.get(&t.url("/")).await.status, 200);
    t.stop().await;

    let t = TestApp::start(&["authz.email_domains=corp.example"]).await;
    let mut b = Browser::new();
    assert_eq!(b.login(&t.url("/"), "alice", "").await.status, 403);
    t.stop().await;
}

#[tokio::test]
async fn a_session_refused_later_is_denied_and_cleared() {
    // A session made when the policy was open, presented after it tightened.
    let open = TestApp::start(&[]).await;
    let mut b = Browser::new();
    b.login(&open.url("/"), "alice", "devs").await;
    let key = open.key.to_base64();
    open.stop().await;
    let strict = TestApp::start(&[
        "authz.allowed_groups=admins",
        &format!("cookie.previous_secrets={key}"),
    ])
    .await;
    let r = b.get(&strict.url("/")).await;
    assert_eq!(r.status, 403);
    assert!(r
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("_portcullis=;")));
    strict.stop().await;
}

#[tokio::test]
async fn callback_errors_are_clear_403_pages() {
    let t = TestApp::start(&[]).await;
    let mut b = Browser::new();
    let cases = [
        "/oauth2/callback?error=access_denied&error_description=%3Cscript%3E",
        "/oauth2/callback?code=abc&state=unknown-state",
        "/oauth2/callback?code=abc",
        "/oauth2/callback?state=abc",
        "/oauth2/callback",
    ];
    for path in cases {
        let r = b.get(&t.url(path)).await;
        assert_eq!(r.status, 403, "{path}");
        assert!(r.body.contains("Request ID"), "{path}: request id shown");
        assert!(!r.body.contains("<script>"), "{path}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    }
    t.stop().await;
}

#[tokio::test]
async fn a_code_cannot_be_used_twice() {
    let t = TestApp::start(&[]).await;
    let mut b = Browser::new();
    let start = b.get(&t.url("/")).await;
    let authorize = start.header("location").unwrap().to_string();
    let pending = b.jar.clone();
    let callback = b.authorize(&authorize, "alice", "").await;
    assert_eq!(b.get(&callback).await.status, 302);
    // Replay with the pending-login cookie restored: the IdP refuses the used code.
    let mut replay = Browser::new();
    replay.jar = pending;
    let r = replay.get(&callback).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("rejected the sign-in code"));
    // Replay without it: no pending login.
    let r = Browser::new().get(&callback).await;
    assert_eq!(r.status, 403);
    t.stop().await;
}

#[tokio::test]
async fn parallel_logins_work_and_pending_cookies_are_capped() {
    let t = TestApp::start(&["cookie.max_pending_logins=3"]).await;
    let mut b = Browser::new();
    let mut authorizes = Vec::new();
    for i in 0..5 {
        let r = b.get(&t.url(&format!("/tab/{i}"))).await;
        authorizes.push(r.header("location").unwrap().to_string());
    }
    let pending = b.jar.keys().filter(|k| k.contains("_csrf_")).count();
    assert_eq!(pending, 3, "{:?}", b.jar.keys());
    // The newest tab (4) and another kept one (2) both complete; the oldest (0) is gone.
    for (i, status, location) in [
        (4, 302, Some("/tab/4")),
        (2, 302, Some("/tab/2")),
        (0, 403, None),
    ] {
        let callback = b.authorize(&authorizes[i], "alice", "").await;
        let r = b.get(&callback).await;
        assert_eq!(r.status, status, "tab {i}");
        if location.is_some() {
            assert_eq!(r.header("location"), location);
        }
    }
    t.stop().await;
}

#[tokio::test]
async fn sign_out_clears_and_uses_rp_initiated_logout() {
    let t = TestApp::start(&[]).await;
    let mut b = Browser::new();
    b.login(&t.url("/"), "alice", "").await;
    let r = b.get(&t.url("/oauth2/sign_out?rd=/bye")).await;
    assert_eq!(r.status, 302);
    let loc = r.header("location").unwrap();
    assert!(
        loc.starts_with(&format!("{}/logout?", t.idp.issuer)),
        "{loc}"
    );
    assert!(loc.contains("id_token_hint=ey"));
    let expected =
        format!("post_logout_redirect_uri=http%3A%2F%2F{}%2Fbye", t.http).replace(':', "%3A");
    assert!(loc.contains(&expected), "{loc} lacks {expected}");
    assert!(!b.jar.contains_key("_portcullis"));
    assert_eq!(b.get(&t.url("/")).await.status, 302, "signed out");

    // Without a session: straight to the validated rd; no rd or a foreign one lands on the
    // signed-out page.
    let r = Browser::new()
        .get(&t.url("/oauth2/sign_out?rd=https://evil.com/"))
        .await;
    assert_eq!(r.header("location"), Some("/oauth2/signed_out"));
    let r = Browser::new()
        .get(&t.url("/oauth2/sign_out?rd=//evil.com"))
        .await;
    assert_eq!(r.header("location"), Some("/oauth2/signed_out"));
    let r = Browser::new().get(&t.url("/oauth2/sign_out?rd=/bye")).await;
    assert_eq!(r.header("location"), Some("/bye"));

    // Signed in, no rd: the IdP sends the browser back to the signed-out page.
    let mut b = Browser::new();
    b.login(&t.url("/"), "alice", "").await;
    let r = b.get(&t.url("/oauth2/sign_out")).await;
    let loc = r.header("location").unwrap();
    let expected = format!(
        "post_logout_redirect_uri=http%3A%2F%2F{}%2Foauth2%2Fsigned_out",
        t.http
    )
    .replace(':', "%3A");
    assert!(loc.contains(&expected), "{loc} lacks {expected}");

    // The signed-out page: never 200, a way back in, the pages' CSP.
    let page = Browser::new()
        .get(&t.url("/oauth2/signed_out?rd=/dash"))
        .await;
    assert_eq!(page.status, 401);
    assert!(
        page.body.contains("You&#x27;re signed out") || page.body.contains("You're signed out"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .replace("&#x2f;", "/")
            .contains("/oauth2/start?rd=/dash\""),
        "{}",
        page.body
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("style-src 'sha256-"), "{csp}");
    t.stop().await;
}

#[tokio::test]
async fn start_and_sign_in_routes() {
    let t = TestApp::start(&[]).await;
    let mut b = Browser::new();
    let page = b.get(&t.url("/oauth2/sign_in?rd=/dash")).await;
    assert_eq!(
        page.status, 401,
        "never 200: through a gateway that would be an allow"
    );
    assert!(
        page.body.contains("start?rd=%2Fdash")
            || page.body.contains("start?rd=&#x2f;dash")
            || page.body.contains("%2Fdash"),
        "{}",
        page.body
    );

    let r = b
        .login(&t.url("/oauth2/start?rd=/dash%3Fa%3D1"), "alice", "")
        .await;
    assert_eq!(r.header("location"), Some("/dash?a=1"));
    let r = Browser::new()
        .login(
            &t.url("/oauth2/start?rd=https://evil.example/"),
            "alice",
            "",
        )
        .await;
    assert_eq!(r.header("location"), Some("/"), "foreign rd refused");
    let unknown = Browser::new().get(&t.url("/oauth2/nothing")).await;
    assert_eq!(unknown.status, 404);
    t.stop().await;
}

#[tokio::test]
async fn health_paths_on_the_check_listener_are_ordinary_checks() {
    let t = TestApp::start(&[]).await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = Browser::new().get(&t.url(path)).await;
        assert_eq!(r.status, 302, "{path} is a check, not a 200");
    }
    let admin = reqwest::Client::new();
    let h = admin
        .get(format!("http://{}/healthz", t.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    let r = admin
        .get(format!("http://{}/readyz", t.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    t.stop().await;
}

#[tokio::test]
async fn idp_down_means_503_and_not_ready() {
    // An issuer that is not listening: discovery keeps failing.
    let idp = crate::support::stopped_idp().await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let t = TestApp::start_with_issuer(idp, &[], false).await;
    let r = Browser::new().get(&t.url("/x")).await;
    assert_eq!(r.status, 503, "never 200, never a silent deny");
    assert!(r.body.contains("temporarily unavailable"));
    let api = Browser::new()
        .send(
            reqwest::Method::GET,
            &t.url("/x"),
            &[("accept", "application/json")],
        )
        .await;
    // API callers without a session need no IdP: 401 still.
    assert_eq!(api.status, 401);
    let ready = reqwest::get(format!("http://{}/readyz", t.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    t.stop().await;
}

#[tokio::test]
async fn path_prefix_is_stripped_and_required() {
    let t = TestApp::start(&["server.path_prefix=/check"]).await;
    let mut b = Browser::new();
    let r = b.get(&t.url("/app")).await;
    assert_eq!(r.status, 403, "missing prefix is a misconfiguration");
    let r = b.get(&t.url("/checkapp")).await;
    assert_eq!(r.status, 403, "prefix must end at a segment");
    let r = b.get(&t.url("/check/app?q=1")).await;
    assert_eq!(r.status, 302);
    // The login routes are found after the prefix too.
    let r = b.get(&t.url("/check/oauth2/sign_in")).await;
    assert_eq!(r.status, 401);
    t.stop().await;
}

#[tokio::test]
async fn head_and_odd_methods_decide_like_get() {
    let t = TestApp::start(&[]).await;
    let mut b = Browser::new();
    b.login(&t.url("/"), "alice", "").await;
    for m in [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PURGE",
    ] {
        let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
        let r = b
            .send(method.clone(), &t.url("/x"), &[("accept", "text/html")])
            .await;
        assert_eq!(r.status, 200, "{m} with a session");
        assert_eq!(r.header("x-auth-request-user"), Some("alice"), "{m}");
        let r = Browser::new()
            .send(method, &t.url("/x"), &[("accept", "text/html")])
            .await;
        assert_eq!(r.status, 302, "{m} without a session");
        assert!(r.header("content-length").is_some());
        if m == "HEAD" {
            assert!(r.body.is_empty());
        }
    }
    t.stop().await;
}

#[tokio::test]
async fn many_checks_on_one_keep_alive_connection_and_h2c() {
    let t = TestApp::start(&[]).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    for i in 0..300 {
        let r = client
            .post(t.url(&format!("/k/{i}")))
            .header("accept", "application/json")
            .body(vec![0xFFu8, 0x00, 0x41])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = h2
        .get(t.url("/h2"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 302);
    t.stop().await;
}

#[tokio::test]
async fn custom_templates_are_used() {
    let dir = std::env::temp_dir().join(format!("portcullis-tpl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("error.html"),
        "<p>custom {{ StatusCode }} {{ Title }} {{ RequestID }}</p>",
    )
    .unwrap();
    let t = TestApp::start(&[&format!("pages.templates_dir={}", dir.display())]).await;
    let r = Browser::new().get(&t.url("/oauth2/callback")).await;
    assert_eq!(r.status, 403);
    assert!(r.body.starts_with("<p>custom 403 "), "{}", r.body);
    t.stop().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn large_header_sections_are_accepted() {
    // Envoy's limits: 60 KiB and 100 fields; hyper's default of 100 fields would answer 431.
    let t = TestApp::start(&[]).await;
    let mut req = reqwest::Client::new()
        .get(t.url("/big"))
        .header("accept", "application/json");
    for i in 0..110 {
        req = req.header(format!("x-filler-{i}"), "v".repeat(500));
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 401, "decided normally, not 431");
    t.stop().await;
}

#[tokio::test]
async fn idp_failing_during_the_callback_is_a_502_page() {
    let mut t = TestApp::start(&[]).await;
    let mut b = Browser::new();
    let start = b.get(&t.url("/x")).await;
    let authorize = start.header("location").unwrap().to_string();
    let callback = b.authorize(&authorize, "alice", "").await;
    t.idp.stop();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let r = b.get(&callback).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(r.body.contains("Request ID"));
    assert!(!b.jar.contains_key("_portcullis"));
    t.stop().await;
}

#[tokio::test]
async fn metrics_count_decisions_logins_and_idp_calls() {
    let t = TestApp::start(&["authz.allowed_groups=admins"]).await;
    let mut b = Browser::new();
    b.login(&t.url("/"), "ann", "admins").await;
    b.get(&t.url("/")).await;
    Browser::new().login(&t.url("/"), "eve", "devs").await;
    Browser::new()
        .send(
            reqwest::Method::GET,
            &t.url("/api"),
            &[("accept", "application/json")],
        )
        .await;
    let r = reqwest::get(format!("http://{}/metrics", t.admin))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = r.text().await.unwrap();
    let value = |needle: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{needle} missing in:\n{text}"))
    };
    assert_eq!(
        value("portcullis_decisions_total{adapter=\"http\",outcome=\"allow\",reason=\"session\"}"),
        1.0
    );
    assert_eq!(
        value("portcullis_decisions_total{adapter=\"http\",outcome=\"login\",reason=\"redirect\"}"),
        2.0
    );
    assert_eq!(
        value("portcullis_decisions_total{adapter=\"http\",outcome=\"login\",reason=\"api\"}"),
        1.0
    );
    assert_eq!(
        value("portcullis_decisions_total{adapter=\"http\",outcome=\"route\",reason=\"callback\"}"),
        2.0
    );
    assert_eq!(value("portcullis_logins_total{result=\"started\"}"), 2.0);
    assert_eq!(value("portcullis_logins_total{result=\"succeeded\"}"), 1.0);
    assert_eq!(value("portcullis_logins_total{result=\"refused\"}"), 1.0);
    assert_eq!(
        value("portcullis_idp_requests_total{endpoint=\"token\",status=\"ok\"}"),
        2.0
    );
    assert!(value("portcullis_check_duration_seconds_count{adapter=\"http\"}") >= 6.0);
    assert!(
        !text.contains("alice") && !text.contains("/api"),
        "no users or paths in labels"
    );
    t.stop().await;
}

#[tokio::test]
async fn unverified_emails_are_refused_unless_allowed() {
    for (allow, status) in [("false", 403), ("true", 302)] {
        let t = TestApp::start(&[&format!("oidc.allow_unverified_email={allow}")]).await;
        let mut b = Browser::new();
        let start = b.get(&t.url("/x")).await;
        let authorize = format!("{}&dev_unverified=1", start.header("location").unwrap());
        let callback = b.authorize(&authorize, "mallory", "").await;
        let r = b.get(&callback).await;
        assert_eq!(
            r.status, status,
            "allow_unverified_email={allow}: {}",
            r.body
        );
        if status == 403 {
            assert!(r.body.contains("not verified"));
            assert!(!b.jar.contains_key("_portcullis"));
        }
        t.stop().await;
    }
}

#[tokio::test]
async fn an_oauth2_proxy_config_file_runs_the_same_login() {
    let idp = portcullis::dev_idp::start(
        "127.0.0.1:0".parse().unwrap(),
        portcullis::dev_idp::DevClient {
            client_id: "from-oauth2-proxy".into(),
            client_secret: "its-secret".into(),
        },
        portcullis::clock::Clock::system(),
    )
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("portcullis-o2p-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("oauth2-proxy.cfg");
    std::fs::write(
        &file,
        format!(
            r#"provider = "oidc"
oidc_issuer_url = "{}"
client_id = "from-oauth2-proxy"
client_secret = "its-secret"
upstreams = ["static://200"]
reverse_proxy = true
skip_provider_button = true
set_xauthrequest = true
email_domains = ["example.com"]
cookie_name = "_oauth2_proxy"
cookie_secret = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
cookie_secure = false
"#,
            idp.issuer
        ),
    )
    .unwrap();
    let config = portcullis::config::Config::load(&portcullis::config::Sources {
        file: None,
        oauth2_proxy_file: Some(file),
        sets: vec![
            "server.http_address=127.0.0.1:0".into(),
            "server.admin_address=127.0.0.1:0".into(),
            "server.grpc_address=127.0.0.1:0".into(),
        ],
        use_env: false,
    })
    .unwrap();
    assert_eq!(config.cookie.name, "_oauth2_proxy");
    assert!(config.warnings.iter().any(|w| w.contains("reverse_proxy")));
    let app = std::sync::Arc::new(
        portcullis::app::App::new(config, portcullis::clock::Clock::system()).unwrap(),
    );
    app.oidc.discover().await.unwrap();
    let listeners = portcullis::app::Listeners::bind(&app.config).await.unwrap();
    let base = format!("http://{}", listeners.http_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(listeners.serve(app, async {
        let _ = rx.await;
    }));
    let mut b = Browser::new();
    assert_eq!(b.login(&format!("{base}/x"), "alice", "").await.status, 302);
    assert!(b.jar.contains_key("_oauth2_proxy"));
    let r = b.get(&format!("{base}/x")).await;
    assert_eq!(r.header("x-auth-request-email"), Some("alice@example.com"));
    // email_domains carried over: a user outside example.com is refused... all dev users are
    // @example.com, so check the policy value instead.
    let _ = tx.send(());
    task.await.unwrap().unwrap();
    drop(idp);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn per_route_rules_through_the_check_listener() {
    let rules = r#"
[[authz.rules]]
paths = ["/public/*"]
action = "public"
[[authz.rules]]
paths = ["/admin/*"]
action = "require"
groups = ["admins"]
[[authz.rules]]
paths = ["/api/*"]
action = "authenticated"
api = true
"#;
    let idp = support::test_idp().await;
    // The rules are loaded through the same layers as a user's --config file.
    let t = TestApp::start_full(idp, &[], Some(rules), true).await;

    // Public: no login, and a spoofed identity header is overwritten with an empty value.
    let r = Browser::new()
        .send(
            reqwest::Method::GET,
            &t.url("/public/page"),
            &[
                ("accept", "text/html"),
                ("x-auth-request-email", "evil@example.com"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-auth-request-email"), Some(""));
    // API rule: 401 even for a browser.
    assert_eq!(Browser::new().get(&t.url("/api/x")).await.status, 401);
    // Admin: devs are refused, admins pass; the refused user keeps the session for other pages.
    let mut dev = Browser::new();
    dev.login(&t.url("/"), "dan", "devs").await;
    let r = dev.get(&t.url("/admin/panel")).await;
    assert_eq!(r.status, 403);
    assert!(r.set_cookies().is_empty(), "session kept");
    assert_eq!(dev.get(&t.url("/elsewhere")).await.status, 200);
    assert_eq!(dev.get(&t.url("/public/../admin/panel")).await.status, 403);
    assert_eq!(
        dev.get(&t.url("/public%2f..%2fadmin/panel")).await.status,
        400
    );
    let mut admin = Browser::new();
    admin.login(&t.url("/"), "ann", "admins").await;
    assert_eq!(admin.get(&t.url("/admin/panel")).await.status, 200);
    t.stop().await;
}

#[tokio::test]
async fn login_mode_page_shows_the_sign_in_page_in_place() {
    let t = TestApp::start(&["pages.login_mode=page", "pages.title=ACME"]).await;
    let mut b = Browser::new();
    let page = b.get(&t.url("/deep/page?x=1")).await;
    assert_eq!(
        page.status, 401,
        "never 200: through a gateway that would be an allow"
    );
    assert!(page.body.contains("Sign in to continue"), "{}", page.body);
    assert!(page.body.contains("ACME"));
    assert!(
        page.body
            .replace("&#x2f;", "/")
            .contains("href=\"/oauth2/start?rd=/deep/page%3Fx%3D1\""),
        "{}",
        page.body
    );
    assert!(
        b.jar.is_empty(),
        "no pending login until the button is pressed"
    );
    for (name, want) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(page.header(name), Some(want), "{name}");
    }
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .starts_with("default-src 'none'"));
    // API callers still get 401 JSON, and the button's login ends on the deep link.
    let api = b
        .send(
            reqwest::Method::GET,
            &t.url("/x"),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(api.header("content-type"), Some("application/json"));
    let cb = b
        .login(&t.url("/oauth2/start?rd=/deep/page%3Fx%3D1"), "alice", "")
        .await;
    assert_eq!(cb.header("location"), Some("/deep/page?x=1"));
    t.stop().await;
}
