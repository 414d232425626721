//! Forward auth on the real check listener: nginx's `/oauth2/auth`, Caddy/Traefik's
//! `/oauth2/forward` and `forward.catch_all`, with forwarded headers from a trusted peer
//! (127.0.0.1, the address reqwest connects from) and from an untrusted one (127.0.0.2, also
//! loopback on Linux).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::support::{Answer, Browser, TestApp};

const HTML: (&str, &str) = ("accept", "text/html,application/xhtml+xml");
const JSON: (&str, &str) = ("accept", "application/json");

const RULES: &str = r#"
[server]
trusted_proxies = ["127.0.0.1/32"]

[[authz.rules]]
paths = ["/public/*"]
action = "public"

[[authz.rules]]
paths = ["/admin/*"]
action = "require"
groups = ["admins"]
"#;

async fn start(sets: &[&str]) -> TestApp {
    let idp = crate::support::test_idp().await;
    TestApp::start_full(idp, sets, Some(RULES), true).await
}

/// A client whose connections come from 127.0.0.2: not in `server.trusted_proxies`.
fn untrusted() -> Browser {
    Browser {
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
            .build()
            .expect("client"),
        jar: BTreeMap::new(),
    }
}

/// What a proxy sends for an original request `uri` on `host`.
fn forwarded<'a>(uri: &'a str, host: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("x-forwarded-method", "GET"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", host),
        ("x-forwarded-uri", uri),
    ]
}

async fn ask(b: &mut Browser, t: &TestApp, endpoint: &str, headers: &[(&str, &str)]) -> Answer {
    b.send(reqwest::Method::GET, &t.url(endpoint), headers)
        .await
}

fn host(t: &TestApp) -> String {
    t.http.to_string()
}

/// Log in through `/oauth2/forward` as a proxy would pass the browser's requests, with the
/// callback on the application's host (the check listener's address here).
async fn login(t: &TestApp, b: &mut Browser, path: &str, groups: &str) {
    let h = host(t);
    let mut hs = forwarded(path, &h);
    hs.push(HTML);
    let start = ask(b, t, "/oauth2/forward", &hs).await;
    assert_eq!(start.status, 302, "{}", start.body);
    let authorize = start.header("location").expect("location").to_string();
    let redirect_uri = url::Url::parse(&authorize)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned());
    assert_eq!(
        redirect_uri,
        Some(format!("http://{h}/oauth2/callback")),
        "callback on the app's host, from X-Forwarded-Proto/-Host"
    );
    let callback = b.authorize(&authorize, "alice", groups).await;
    let callback = callback
        .strip_prefix(&format!("http://{h}"))
        .expect("callback on the app's host")
        .to_string();
    let mut hs = forwarded(&callback, &h);
    hs.push(HTML);
    let done = ask(b, t, "/oauth2/forward", &hs).await;
    assert_eq!(
        done.status, 302,
        "callback through forward auth: {}",
        done.body
    );
    assert_eq!(done.header("location"), Some(path));
    assert!(b.jar.keys().any(|k| k.starts_with("_portcullis")));
}

#[tokio::test]
async fn nginx_auth_endpoint_statuses_and_identity() {
    let t = start(&[]).await;
    let h = host(&t);
    let mut b = Browser::new();

    // No session: 401, never a redirect, and no pending-login cookie (nginx would drop it).
    let mut hs = forwarded("/app/page", &h);
    hs.push(HTML);
    let r = ask(&mut b, &t, "/oauth2/auth", &hs).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.header("location"), None);
    assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
    assert_eq!(r.body, "Unauthorized\n");

    // Public route: 202 without a session, identity headers present and empty.
    let r = ask(&mut b, &t, "/oauth2/auth", &forwarded("/public/x", &h)).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.header("x-auth-request-user"), Some(""));
    assert_eq!(
        r.header("x-auth-request-access-token"),
        Some(""),
        "sent empty, not listed for Envoy"
    );
    assert_eq!(r.header("x-envoy-auth-headers-to-remove"), None);

    login(&t, &mut b, "/app/page?x=1", "devs").await;

    let r = ask(&mut b, &t, "/oauth2/auth", &forwarded("/app/page?x=1", &h)).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.header("x-auth-request-user"), Some("alice"));
    assert_eq!(r.header("x-auth-request-email"), Some("alice@example.com"));
    assert_eq!(r.header("x-auth-request-groups"), Some("devs"));
    assert_eq!(r.body, "");

    // The policy says no (admins only): 403, still no redirect.
    let r = ask(&mut b, &t, "/oauth2/auth", &forwarded("/admin/x", &h)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("location"), None);

    // The forwarded URI is canonicalised like an Envoy path before rules see it.
    let r = ask(
        &mut b,
        &t,
        "/oauth2/auth",
        &forwarded("/public/../admin/x", &h),
    )
    .await;
    assert_eq!(r.status, 403, "/public/../admin/x is /admin/x");
    let r = ask(&mut b, &t, "/oauth2/auth", &forwarded("//admin/x", &h)).await;
    assert_eq!(r.status, 403);
    // Ambiguous paths are refused (400 inside; nginx only understands 401/403).
    let r = ask(
        &mut b,
        &t,
        "/oauth2/auth",
        &forwarded("/public/%2e%2e/admin/x", &h),
    )
    .await;
    assert_eq!(r.status, 403);
    // Read as `/public/x` or a path of its own by the rules once, but as `/admin` by a server
    // that decodes before splitting off the query or dropping parameters, or keeps `..;x`.
    for path in [
        "/admin%3F/../public/x",
        "/admin%23/../public/x",
        "/admin/..;x/public/x",
        "/admin%3B",
    ] {
        let r = ask(&mut b, &t, "/oauth2/auth", &forwarded(path, &h)).await;
        assert_eq!(r.status, 403, "{path}");
    }

    // Query constraints come from the auth request's own query, not the forwarded URI.
    let r = ask(
        &mut b,
        &t,
        "/oauth2/auth?allowed_groups=admins",
        &forwarded("/app/page", &h),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = ask(
        &mut b,
        &t,
        "/oauth2/auth?allowed_groups=devs",
        &forwarded("/app/page", &h),
    )
    .await;
    assert_eq!(r.status, 202);
    let r = ask(
        &mut b,
        &t,
        "/oauth2/auth",
        &forwarded("/app/page?allowed_groups=nobody", &h),
    )
    .await;
    assert_eq!(r.status, 202, "the client's query is not a constraint");

    // HEAD: same status and headers, no body.
    let r = b
        .send(
            reqwest::Method::HEAD,
            &t.url("/oauth2/auth"),
            &forwarded("/app/page", &h),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(r.header("x-auth-request-user"), Some("alice"));

    let metrics = reqwest::get(format!("http://{}/metrics", t.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("adapter=\"forward\""),
        "decisions counted under adapter=forward"
    );
    t.stop().await;
}

#[tokio::test]
async fn auth_status_200_when_configured() {
    let t = start(&["forward.auth_status=200"]).await;
    let h = host(&t);
    let r = ask(
        &mut Browser::new(),
        &t,
        "/oauth2/auth",
        &forwarded("/public/x", &h),
    )
    .await;
    assert_eq!(r.status, 200);
    t.stop().await;
}

#[tokio::test]
async fn forward_endpoint_logs_in_browsers_and_answers_401_to_apis() {
    let t = start(&[]).await;
    let h = host(&t);
    let mut api = Browser::new();
    let mut hs = forwarded("/api/things", &h);
    hs.push(JSON);
    let r = ask(&mut api, &t, "/oauth2/forward", &hs).await;
    assert_eq!(r.status, 401);
    assert!(r
        .header("content-type")
        .unwrap_or_default()
        .starts_with("application/json"));

    // The return URL and the callback are rebuilt from the forwarded headers.
    let mut hs = forwarded("/deep/link?q=1", "app.example.com:8443");
    hs[1] = ("x-forwarded-proto", "https");
    hs.push(HTML);
    let r = ask(&mut Browser::new(), &t, "/oauth2/forward", &hs).await;
    assert_eq!(r.status, 302);
    let loc = url::Url::parse(r.header("location").expect("location")).expect("url");
    let q: BTreeMap<String, String> = loc.query_pairs().into_owned().collect();
    assert_eq!(
        q.get("redirect_uri").map(String::as_str),
        Some("https://app.example.com:8443/oauth2/callback")
    );
    assert!(r
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("_portcullis_csrf_")));

    let mut b = Browser::new();
    login(&t, &mut b, "/admin/x", "admins,devs").await;
    let r = ask(&mut b, &t, "/oauth2/forward", &forwarded("/admin/x", &h)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-auth-request-groups"), Some("admins,devs"));

    // Sign-out through forward auth, on the app's host.
    let mut hs = forwarded("/oauth2/sign_out", &h);
    hs.push(HTML);
    let r = ask(&mut b, &t, "/oauth2/forward", &hs).await;
    assert_eq!(r.status, 302);
    assert!(!b.jar.keys().any(|k| k == "_portcullis"), "{:?}", b.jar);
    let mut hs = forwarded("/app", &h);
    hs.push(JSON);
    let r = ask(&mut b, &t, "/oauth2/forward", &hs).await;
    assert_eq!(r.status, 401, "signed out");
    t.stop().await;
}

#[tokio::test]
async fn forwarded_headers_from_untrusted_peers_change_nothing() {
    let t = start(&["forward.catch_all=true"]).await;
    let h = host(&t);
    let mut b = Browser::new();
    login(&t, &mut b, "/app", "devs").await;
    let mut evil = untrusted();
    evil.jar = b.jar.clone();

    // X-Forwarded-Uri: /public while the request line is /admin: trusted, the URI is the
    // original request; untrusted, /admin is decided on (a devs session is refused).
    let spoof = [("x-forwarded-uri", "/public/x"), HTML];
    let r = ask(&mut evil, &t, "/admin/x", &spoof).await;
    assert_eq!(r.status, 403, "untrusted peer: the real path decides");
    let r = ask(&mut evil, &t, "/admin/x", &[HTML]).await;
    assert_eq!(r.status, 403, "same answer without the header");

    // Without a session, the spoofed public path does not open /admin either.
    let mut anon = untrusted();
    let r = ask(
        &mut anon,
        &t,
        "/admin/x",
        &[("x-forwarded-uri", "/public/x"), JSON],
    )
    .await;
    assert_eq!(r.status, 401);
    // On nginx's endpoint an untrusted peer's forwarded URI is ignored: /oauth2/auth is
    // decided on (global rules: a session is needed).
    let r = ask(
        &mut anon,
        &t,
        "/oauth2/auth",
        &[("x-forwarded-uri", "/public/x")],
    )
    .await;
    assert_eq!(r.status, 401);
    let r = ask(
        &mut anon,
        &t,
        "/oauth2/forward",
        &[("x-forwarded-uri", "/public/x"), JSON],
    )
    .await;
    assert_eq!(r.status, 401);

    // X-Forwarded-Host: evil.example from an untrusted peer: the callback stays on the Host.
    let mut hs = vec![
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        HTML,
    ];
    let r = ask(&mut anon, &t, "/deep", &hs).await;
    assert_eq!(r.status, 302);
    let loc = r.header("location").expect("location");
    assert!(!loc.contains("evil.example"), "{loc}");
    assert!(
        loc.contains(&format!(
            "redirect_uri=http%3A%2F%2F{}",
            h.replace(':', "%3A")
        )),
        "{loc}"
    );
    // The same from the trusted peer does use it (that is what the proxy is trusted for).
    let r = ask(&mut Browser::new(), &t, "/deep", &hs).await;
    assert!(r
        .header("location")
        .expect("location")
        .contains("evil.example"));

    // Two X-Forwarded-Uri lines from a trusted peer: refused, not guessed.
    hs.clear();
    let r = ask(
        &mut b,
        &t,
        "/oauth2/auth",
        &[
            ("x-forwarded-uri", "/public/x"),
            ("x-forwarded-uri", "/admin/x"),
        ],
    )
    .await;
    assert_eq!(r.status, 403);
    t.stop().await;
}

#[tokio::test]
async fn underscore_variants_of_identity_headers_are_refused() {
    let t = start(&[]).await;
    let h = host(&t);
    let mut b = Browser::new();
    login(&t, &mut b, "/app", "devs").await;
    for name in [
        "X_Auth_Request_User",
        "x_auth_request_groups",
        "X-Auth-Request_Email",
        "x_auth_request_preferred_username",
    ] {
        let mut hs = forwarded("/public/x", &h);
        hs.push((name, "admin"));
        let r = ask(&mut b, &t, "/oauth2/forward", &hs).await;
        assert_eq!(r.status, 400, "{name}");
        let r = ask(&mut b, &t, "/oauth2/auth", &hs).await;
        assert_eq!(r.status, 403, "{name} (nginx: 403)");
    }
    // The exact names in any case are allowed through to be overwritten by the proxy, and
    // portcullis's answer carries the real values.
    let mut hs = forwarded("/app", &h);
    hs.push(("X-AUTH-REQUEST-USER", "admin"));
    let r = ask(&mut b, &t, "/oauth2/forward", &hs).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-auth-request-user"), Some("alice"));
    // A /forward allow carries every cookie slot for Caddy's handle_response, empty when it
    // sets no cookie (config/caddy/Caddyfile skips empty ones).
    for i in 0..portcullis::http::forward::COOKIE_SLOTS {
        assert_eq!(
            r.header(&format!("x-portcullis-set-cookie-{i}")),
            Some(""),
            "slot {i}"
        );
    }
    assert!(r.set_cookies().is_empty());
    t.stop().await;
}

#[tokio::test]
async fn every_set_cookie_line_reaches_nginx_through_numbered_copies() {
    // A session big enough to be split into chunks, issued under an open policy...
    let t = start(&[]).await;
    let mut b = Browser::new();
    let groups: Vec<String> = (0..100)
        .map(|i| format!("group-with-a-long-name-{i:04}"))
        .collect();
    login(&t, &mut b, "/app", &groups.join(",")).await;
    let chunks: Vec<String> = b
        .jar
        .keys()
        .filter(|k| k.starts_with("_portcullis_"))
        .cloned()
        .collect();
    assert!(chunks.len() >= 2, "chunked session: {chunks:?}");
    let key = t.key.to_base64();
    t.stop().await;

    // ...then refused by a stricter global policy: the 403 clears every chunk.
    let strict = start(&[
        &format!("cookie.secret={key}"),
        "authz.allowed_groups=admins",
    ])
    .await;
    let h = host(&strict);
    let r = ask(&mut b, &strict, "/oauth2/auth", &forwarded("/app", &h)).await;
    assert_eq!(r.status, 403);
    let lines = r.set_cookies();
    assert!(lines.len() > chunks.len(), "{lines:?}");
    assert!(lines.len() <= portcullis::http::forward::COOKIE_SLOTS);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(
            r.header(&format!("x-portcullis-set-cookie-{i}")),
            Some(line.as_str()),
            "copy {i}"
        );
    }
    assert_eq!(
        r.header(&format!("x-portcullis-set-cookie-{}", lines.len())),
        None
    );
    for c in &chunks {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{c}=")) && l.contains("Max-Age=0")),
            "{c} expired: {lines:?}"
        );
    }
    strict.stop().await;
}
