//! Token refresh during checks, against the development issuer issuing short-lived access tokens
//! and rotating refresh tokens (a replayed one revokes its family). Issuer and proxy share a
//! fixed clock that the tests move.

use std::time::Duration;

use portcullis::clock::Clock;
use portcullis::dev_idp::DevOptions;

use crate::support::{Answer, Browser, TestApp};

const T0: i64 = 1_900_000_000;
const OFFLINE: &str = "oidc.scopes=openid,email,profile,offline_access";

fn options(access_token_ttl: i64) -> DevOptions {
    DevOptions {
        access_token_ttl,
        ..DevOptions::default()
    }
}

fn session_set_cookie(a: &Answer) -> Option<String> {
    a.set_cookies()
        .into_iter()
        .find(|c| c.starts_with("_portcullis=") && !c.starts_with("_portcullis=;"))
}

fn max_age(line: &str) -> i64 {
    line.split(';')
        .find_map(|p| p.trim().strip_prefix("Max-Age="))
        .and_then(|v| v.parse().ok())
        .expect("Max-Age")
}

fn clears_session(a: &Answer) -> bool {
    a.set_cookies()
        .iter()
        .any(|c| c.starts_with("_portcullis=") && c.contains("Max-Age=0"))
}

/// Signed in as alice at T0.
async fn signed_in(t: &TestApp) -> Browser {
    let mut b = Browser::new();
    let cb = b.login(&t.url("/app"), "alice", "devs").await;
    assert_eq!(cb.status, 302, "{}", cb.body);
    assert!(b.jar.contains_key("_portcullis"));
    b
}

#[tokio::test]
async fn fifty_concurrent_checks_at_refresh_time_make_one_refresh_call() {
    let clock = Clock::fixed(T0);
    let mut opts = options(300);
    // The IdP takes a moment, so the 50 checks really overlap the refresh.
    opts.refresh_delay = Duration::from_millis(200);
    let t = TestApp::start_clocked(&[OFFLINE], clock.clone(), opts).await;
    let mut b = signed_in(&t).await;
    let old_cookie = b.cookie_header();

    // Fresh tokens: no refresh.
    let a = b.get(&t.url("/app")).await;
    assert_eq!(a.status, 200);
    assert!(session_set_cookie(&a).is_none());
    assert_eq!(t.idp.refresh_calls(), 0);

    // 250 s later the access token has 50 s left, inside cookie.refresh (1m).
    clock.advance(250);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let client = b.client.clone();
        let (url, cookie) = (t.url("/app"), old_cookie.clone());
        tasks.push(tokio::spawn(async move {
            let r = client
                .get(url)
                .header("cookie", cookie)
                .header("accept", "text/html")
                .send()
                .await
                .expect("check");
            let status = r.status().as_u16();
            let cookies: Vec<String> = r
                .headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_string))
                .collect();
            (status, cookies)
        }));
    }
    let mut refreshed = Vec::new();
    for task in tasks {
        let (status, cookies) = task.await.expect("join");
        assert_eq!(status, 200, "{cookies:?}");
        let line = cookies
            .into_iter()
            .find(|c| c.starts_with("_portcullis=") && !c.contains("Max-Age=0"))
            .expect("every answer carries the refreshed cookie");
        refreshed.push(line);
    }
    assert_eq!(
        t.idp.refresh_calls(),
        1,
        "exactly one refresh for 50 checks"
    );
    // Each answer's cookie (sealed anew, so the bytes differ) carries the new tokens: using
    // any of them needs no further refresh.
    for line in [&refreshed[0], &refreshed[25], &refreshed[49]] {
        let mut other = Browser::new();
        let pair = line.split(';').next().unwrap_or_default();
        let (name, value) = pair.split_once('=').expect("name=value");
        other.jar.insert(name.into(), value.into());
        let a = other.get(&t.url("/app")).await;
        assert_eq!(a.status, 200);
        assert!(a.set_cookies().is_empty(), "{:?}", a.set_cookies());
    }
    assert_eq!(t.idp.refresh_calls(), 1);

    // A straggler still sending the old cookie reuses the result: replaying the rotated
    // refresh token would have made the IdP revoke the whole grant.
    let mut straggler = Browser::new();
    straggler.jar = b.jar.clone();
    let s = straggler.get(&t.url("/app")).await;
    assert_eq!(s.status, 200);
    assert!(session_set_cookie(&s).is_some());
    assert_eq!(t.idp.refresh_calls(), 1);

    // The browser takes the new cookie: no more refreshes until the new tokens near expiry.
    let a = b.get(&t.url("/app")).await;
    assert_eq!(a.status, 200);
    assert!(
        session_set_cookie(&a).is_some(),
        "first answer after refresh time"
    );
    let a = b.get(&t.url("/app")).await;
    assert_eq!(a.status, 200);
    assert!(session_set_cookie(&a).is_none(), "{:?}", a.set_cookies());
    assert_eq!(a.header("x-auth-request-user"), Some("alice"));
    clock.advance(250);
    let a = b.get(&t.url("/app")).await;
    assert_eq!(a.status, 200);
    assert!(session_set_cookie(&a).is_some());
    assert_eq!(
        t.idp.refresh_calls(),
        2,
        "the rotated token refreshes again"
    );

    let metrics = t.app.metrics.encode();
    for line in [
        "portcullis_idp_requests_total{endpoint=\"refresh\",status=\"ok\"} 2",
        "portcullis_session_refreshes_total{result=\"refreshed\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    t.stop().await;
}

#[tokio::test]
async fn a_revoked_refresh_token_ends_the_session() {
    let clock = Clock::fixed(T0);
    let t = TestApp::start_clocked(&[OFFLINE], clock.clone(), options(300)).await;
    let mut b = signed_in(&t).await;
    t.idp.revoke_refresh_tokens("alice");
    clock.advance(280);
    let a = b.get(&t.url("/app")).await;
    assert_eq!(a.status, 302, "login again: {}", a.body);
    assert!(a
        .header("location")
        .is_some_and(|l| l.starts_with(&t.idp.issuer)));
    assert!(clears_session(&a), "{:?}", a.set_cookies());
    assert!(!b.jar.contains_key("_portcullis"));
    assert_eq!(t.idp.refresh_calls(), 1);
    // API callers get 401 with the same clean-up.
    let mut api = Browser::new();
    let mut fresh = signed_in(&t).await;
    t.idp.revoke_refresh_tokens("alice");
    clock.advance(280);
    api.jar = fresh.jar.clone();
    let r = api
        .send(
            reqwest::Method::GET,
            &t.url("/api"),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(clears_session(&r));
    let again = fresh.get(&t.url("/app")).await;
    assert_eq!(again.status, 302);
    let metrics = t.app.metrics.encode();
    assert!(
        metrics.contains("portcullis_idp_requests_total{endpoint=\"refresh\",status=\"rejected\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("portcullis_session_refreshes_total{result=\"ended\"}"));
    t.stop().await;
}

#[tokio::test]
async fn refreshes_never_extend_the_session_past_cookie_expire() {
    let clock = Clock::fixed(T0);
    let t =
        TestApp::start_clocked(&[OFFLINE, "cookie.expire=10m"], clock.clone(), options(300)).await;
    let mut b = signed_in(&t).await;
    clock.advance(250);
    // The userinfo route refreshes like any check.
    let a = b.get(&t.url("/oauth2/userinfo")).await;
    assert_eq!(a.status, 200);
    let line = session_set_cookie(&a).expect("refreshed");
    assert_eq!(
        max_age(&line),
        600 - 250,
        "what is left of the login's 10 minutes"
    );
    let a = b.get(&t.url("/app")).await;
    assert_eq!(a.status, 200);
    assert!(a.set_cookies().is_empty());
    clock.advance(250); // T0+500: the new tokens (to T0+550) are inside the margin
    let a = b.get(&t.url("/app")).await;
    assert_eq!(a.status, 200);
    assert_eq!(max_age(&session_set_cookie(&a).expect("refreshed")), 100);
    assert_eq!(t.idp.refresh_calls(), 2);
    // T0+600: the session is over although the tokens (to T0+800) are not.
    clock.advance(100);
    let a = b.get(&t.url("/app")).await;
    assert_eq!(a.status, 302, "{}", a.body);
    assert_eq!(t.idp.refresh_calls(), 2, "no refresh for an ended session");
    t.stop().await;
}

#[tokio::test]
async fn expired_tokens_without_a_refresh_token_end_the_session_unless_kept() {
    let clock = Clock::fixed(T0);
    // No offline_access: the issuer gives no refresh token.
    let t = TestApp::start_clocked(&[], clock.clone(), options(300)).await;
    let mut b = signed_in(&t).await;
    clock.advance(299);
    assert_eq!(b.get(&t.url("/app")).await.status, 200);
    clock.advance(1);
    let mut u = Browser::new();
    u.jar = b.jar.clone();
    let info = u.get(&t.url("/oauth2/userinfo")).await;
    assert_eq!(info.status, 401, "{}", info.body);
    assert!(clears_session(&info));
    let a = b.get(&t.url("/app")).await;
    assert_eq!(a.status, 302);
    assert!(clears_session(&a));
    assert_eq!(t.idp.refresh_calls(), 0);
    t.stop().await;

    let clock = Clock::fixed(T0);
    let t = TestApp::start_clocked(
        &["cookie.keep_after_token_expiry=true"],
        clock.clone(),
        options(300),
    )
    .await;
    let mut b = signed_in(&t).await;
    clock.advance(3600);
    let a = b.get(&t.url("/app")).await;
    assert_eq!(a.status, 200, "kept until cookie.expire");
    assert!(a.set_cookies().is_empty());
    t.stop().await;
}

#[tokio::test]
async fn idp_down_at_refresh_time_keeps_valid_tokens_and_fails_closed_after() {
    let clock = Clock::fixed(T0);
    let mut t = TestApp::start_clocked(&[OFFLINE], clock.clone(), options(300)).await;
    let mut b = signed_in(&t).await;
    t.idp.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    clock.advance(250);
    let a = b.get(&t.url("/app")).await;
    assert_eq!(a.status, 200, "tokens still valid: the session carries on");
    assert!(a.set_cookies().is_empty());
    clock.advance(100);
    let a = b.get(&t.url("/app")).await;
    assert_eq!(
        a.status, 502,
        "expired tokens and no IdP: an error (the gateway's failure mode), never an allow"
    );
    t.stop().await;
}

/// One check through `url` carrying `cookie`: status, the user header and the Set-Cookie lines.
async fn check(client: reqwest::Client, url: String, cookie: String) -> (u16, Option<String>) {
    let r = client
        .get(url)
        .header("cookie", cookie)
        .header("accept", "text/html")
        .send()
        .await
        .expect("check");
    let user = r
        .headers()
        .get("x-auth-request-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (r.status().as_u16(), user)
}

fn counter(t: &TestApp, result: &str) -> u64 {
    let line = format!("portcullis_session_refreshes_total{{result=\"{result}\"}} ");
    t.app
        .metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&line).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

/// Two replicas sharing Redis and one rotating IdP: checks arriving on both at refresh time
/// make one refresh grant; the replica that waited for the Redis lock reloads the refreshed
/// session instead of replaying the spent refresh token (which the IdP would answer with
/// `invalid_grant`, revoking the grant).
#[tokio::test]
async fn redis_store_refreshes_once_across_replicas() {
    let redis = crate::sessions::RedisServer::start();
    let clock = Clock::fixed(T0);
    let mut opts = options(300);
    opts.refresh_delay = Duration::from_millis(300);
    let secret = format!(
        "cookie.secret={}",
        portcullis::session::cookie::CookieKey::generate().to_base64()
    );
    let url = format!("session.redis.url={}", redis.url());
    let sets = [
        OFFLINE,
        "session.store=redis",
        &url,
        &secret,
        "session.redis.timeout=500ms",
    ];
    let a = TestApp::start_clocked(&sets, clock.clone(), opts).await;
    let b_app = TestApp::start_replica(&a, &sets, clock.clone()).await;
    let mut browser = signed_in(&a).await;
    let cookie = browser.cookie_header();
    for t in [&a, &b_app] {
        let r = browser.get(&t.url("/app")).await;
        assert_eq!(r.status, 200);
        assert!(session_set_cookie(&r).is_none(), "fresh: no refresh");
    }
    assert_eq!(a.idp.refresh_calls(), 0);

    clock.advance(250);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let t = if i % 2 == 0 { &a } else { &b_app };
        tasks.push(tokio::spawn(check(
            browser.client.clone(),
            t.url("/app"),
            cookie.clone(),
        )));
    }
    for task in tasks {
        let (status, user) = task.await.expect("join");
        assert_eq!(status, 200, "no replica ended the session");
        assert_eq!(user.as_deref(), Some("alice"));
    }
    assert_eq!(
        a.idp.refresh_calls(),
        1,
        "one refresh grant for both replicas"
    );
    // One replica refreshed, the other's leader waited for the lock and reloaded; nobody
    // was refused by the IdP.
    let refreshed = counter(&a, "refreshed") + counter(&b_app, "refreshed");
    let reloaded = counter(&a, "reloaded") + counter(&b_app, "reloaded");
    assert_eq!((refreshed, reloaded), (1, 1));
    assert_eq!(counter(&a, "ended") + counter(&b_app, "ended"), 0);
    assert_eq!(counter(&a, "failed") + counter(&b_app, "failed"), 0);

    // The browser's ticket (the same id and key before and after) now opens the refreshed
    // record on both replicas: no further refresh until the new tokens near expiry.
    for t in [&a, &b_app, &a, &b_app] {
        let (status, user) = check(browser.client.clone(), t.url("/app"), cookie.clone()).await;
        assert_eq!((status, user.as_deref()), (200, Some("alice")));
    }
    assert_eq!(a.idp.refresh_calls(), 1);

    // The next refresh (the rotated token, 250 s on) happens once too, on whichever replica
    // sees it first, and works: the rotated token was stored, not the spent one.
    clock.advance(250);
    let (x, y) = tokio::join!(
        check(browser.client.clone(), b_app.url("/app"), cookie.clone()),
        check(browser.client.clone(), a.url("/app"), cookie.clone()),
    );
    assert_eq!((x.0, y.0), (200, 200));
    assert_eq!(a.idp.refresh_calls(), 2);
    let r = browser.get(&a.url("/app")).await;
    assert_eq!(r.status, 200);
    assert!(session_set_cookie(&r).is_none());
    b_app.stop().await;
    a.stop().await;
}

/// Cookie sessions (here with the Redis deny-list) keep one refresh per process: there is no
/// shared record a second replica could reload, so no cross-replica lock is taken.
#[tokio::test]
async fn cookie_store_with_redis_takes_no_refresh_lock() {
    let redis = crate::sessions::RedisServer::start();
    let clock = Clock::fixed(T0);
    let url = format!("session.redis.url={}", redis.url());
    let t = TestApp::start_clocked(&[OFFLINE, &url], clock.clone(), options(300)).await;
    assert!(t
        .app
        .sessions
        .refresh_lock(Duration::from_secs(1))
        .is_none());
    let mut b = signed_in(&t).await;
    clock.advance(250);
    let r = b.get(&t.url("/app")).await;
    assert_eq!(r.status, 200);
    assert!(session_set_cookie(&r).is_some());
    assert_eq!(t.idp.refresh_calls(), 1);
    t.stop().await;
}
