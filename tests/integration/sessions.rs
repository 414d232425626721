//! Server-side sessions, revocation and back-channel logout against a real `redis-server`
//! (Debian package; scripts/install-test-deps.sh installs it). Each test starts its own server
//! on a free loopback port with its own directory and stops it (by PID) when it ends.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Json;
use http::{HeaderMap, HeaderValue, Method};
use jsonwebtoken::Algorithm;
use portcullis::authz::input::CheckInput;
use portcullis::clock::Clock;
use portcullis::session::cookie::CookieKey;
use portcullis::session::{random_id, Session};
use portcullis::token::testkit::{jwks, SigningKey};
use serde_json::{json, Value};

use crate::support::{Browser, TestApp, CLIENT_ID};

/// A `redis-server` child process on 127.0.0.1.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    args: Vec<String>,
}

use crate::support::free_port;

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Start with extra arguments (e.g. `--replicaof`, `--cluster-enabled yes`). Data is saved
    /// on shutdown, so a stop and a start on the same port keep the sessions.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("portcullis-redis-{port}-{}", random_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut args: Vec<String> = [
            "--bind",
            "127.0.0.1",
            "--save",
            "3600 1",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut s = RedisServer {
            port,
            dir,
            child: None,
            args,
        };
        s.resume();
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Start (again) on the same port and directory; returns once it answers PING.
    pub fn resume(&mut self) {
        let log = std::fs::File::create(self.dir.join("redis.log")).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--dir"])
            .arg(&self.dir)
            .args(&self.args)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (install with scripts/install-test-deps.sh)");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        for _ in 0..100 {
            if let Ok(mut c) = redis::Client::open(self.url()).and_then(|c| c.get_connection()) {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "redis-server on {} did not start: {}",
            self.port,
            std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
        );
    }

    /// SIGTERM (redis saves its data) and wait for the process to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    /// A synchronous connection for assertions.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

async fn app(redis: &RedisServer, store: &str, extra: &[&str]) -> TestApp {
    let url = format!("session.redis.url={}", redis.url());
    let store = format!("session.store={store}");
    let admin = format!("admin.token={ADMIN_TOKEN}");
    let mut sets: Vec<&str> = vec![&url, &store, &admin, "session.redis.timeout=300ms"];
    sets.extend_from_slice(extra);
    TestApp::start(&sets).await
}

async fn revoke(t: &TestApp, token: Option<&str>, body: &str) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}/admin/sessions/revoke", t.admin))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(tok) = token {
        req = req.bearer_auth(tok);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn readyz(t: &TestApp) -> u16 {
    reqwest::get(format!("http://{}/readyz", t.admin))
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The request a browser with this jar makes, as the store sees it.
fn input_for(b: &Browser) -> CheckInput {
    let mut h = HeaderMap::new();
    h.insert("cookie", HeaderValue::from_str(&b.cookie_header()).unwrap());
    CheckInput::new(Method::GET, "127.0.0.1", "/", h, "test".into())
}

fn session_keys(r: &RedisServer) -> Vec<String> {
    let mut c = r.conn();
    redis::cmd("KEYS")
        .arg("portcullis:s:*")
        .query(&mut c)
        .unwrap()
}

#[tokio::test]
async fn redis_store_keeps_only_a_ticket_in_the_cookie() {
    let r = RedisServer::start();
    let t = app(&r, "redis", &["headers.pass_access_token=true"]).await;
    let mut b = Browser::new();
    assert_eq!(b.login(&t.url("/app"), "alice", "devs").await.status, 302);
    let cookie = b.jar.get("_portcullis").expect("ticket cookie").clone();
    assert!(
        cookie.len() < 300,
        "a ticket, not a session: {}",
        cookie.len()
    );
    let ok = b.get(&t.url("/app")).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("x-auth-request-user"), Some("alice"));
    assert!(ok.header("x-auth-request-access-token").is_some());

    let keys = session_keys(&r);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let mut c = r.conn();
    let stored: String = redis::cmd("GET").arg(&keys[0]).query(&mut c).unwrap();
    assert!(!stored.contains("alice"), "the record is encrypted");
    let ttl: i64 = redis::cmd("TTL").arg(&keys[0]).query(&mut c).unwrap();
    assert!((168 * 3600 - 60..=168 * 3600).contains(&ttl), "TTL {ttl}");
    assert_eq!(readyz(&t).await, 200);

    // The record deleted behind the proxy's back: the ticket opens nothing.
    let _: () = redis::cmd("DEL").arg(&keys[0]).query(&mut c).unwrap();
    assert_eq!(b.get(&t.url("/app")).await.status, 302);
    t.stop().await;
}

#[tokio::test]
async fn a_session_made_on_one_replica_works_on_another() {
    let r = RedisServer::start();
    let secret = CookieKey::generate().to_base64();
    let s = format!("cookie.secret={secret}");
    let a = app(&r, "redis", &[&s]).await;
    let b_app = app(&r, "redis", &[&s]).await;
    let mut b = Browser::new();
    assert_eq!(b.login(&a.url("/x"), "carol", "").await.status, 302);
    let via_b = b.get(&b_app.url("/x")).await;
    assert_eq!(via_b.status, 200);
    assert_eq!(via_b.header("x-auth-request-user"), Some("carol"));
    // Sign-out through B ends the session on A too (server-side, not just the cookie).
    let jar = b.jar.clone();
    assert_eq!(b.get(&b_app.url("/oauth2/sign_out")).await.status, 302);
    let mut replay = Browser::new();
    replay.jar = jar;
    assert_eq!(replay.get(&a.url("/x")).await.status, 302);
    assert!(session_keys(&r).is_empty());
    a.stop().await;
    b_app.stop().await;
}

#[tokio::test]
async fn redis_down_is_503_never_an_allow_and_service_recovers() {
    let mut r = RedisServer::start();
    let t = app(&r, "redis", &[]).await;
    let mut b = Browser::new();
    assert_eq!(b.login(&t.url("/p"), "dave", "").await.status, 302);
    assert_eq!(b.get(&t.url("/p")).await.status, 200);

    r.stop();
    let down = b.get(&t.url("/p")).await;
    assert_eq!(down.status, 503, "{}", down.body);
    let api = b
        .send(
            reqwest::Method::GET,
            &t.url("/p"),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(api.status, 503);
    assert!(api.body.contains("Sessions are temporarily unavailable"));
    assert_eq!(readyz(&t).await, 503);
    // A new login cannot be stored either: an error, not a session-less allow.
    let mut other = Browser::new();
    assert_eq!(other.login(&t.url("/p"), "eve", "").await.status, 503);

    r.resume();
    let mut back = 0;
    for _ in 0..50 {
        back = b.get(&t.url("/p")).await.status;
        if back == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(back, 200, "the session survived and the proxy reconnected");
    assert_eq!(readyz(&t).await, 200);
    t.stop().await;
}

#[tokio::test]
async fn an_unresponsive_redis_times_out_as_503() {
    let r = RedisServer::start();
    let t = app(&r, "redis", &[]).await;
    let mut b = Browser::new();
    assert_eq!(b.login(&t.url("/p"), "frank", "").await.status, 302);
    let pid = r.child.as_ref().unwrap().id().to_string();
    Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    let started = std::time::Instant::now();
    let status = b.get(&t.url("/p")).await.status;
    let took = started.elapsed();
    Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    assert_eq!(status, 503);
    assert!(
        took < Duration::from_secs(5),
        "bounded by the timeout: {took:?}"
    );
    let mut back = 0;
    for _ in 0..50 {
        back = b.get(&t.url("/p")).await.status;
        if back == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(back, 200);
    t.stop().await;
}

#[tokio::test]
async fn admin_api_revokes_by_subject_and_by_session_id() {
    for store in ["redis", "cookie"] {
        let r = RedisServer::start();
        let t = app(&r, store, &[]).await;
        let mut alice1 = Browser::new();
        let mut alice2 = Browser::new();
        let mut bob = Browser::new();
        for (b, who) in [
            (&mut alice1, "alice"),
            (&mut alice2, "alice"),
            (&mut bob, "bob"),
        ] {
            assert_eq!(b.login(&t.url("/"), who, "").await.status, 302);
            assert_eq!(b.get(&t.url("/")).await.status, 200);
        }
        let (s, body) = revoke(&t, Some(ADMIN_TOKEN), r#"{"subject":"alice"}"#).await;
        assert_eq!(s, 200, "{store}: {body}");
        assert_eq!(alice1.get(&t.url("/")).await.status, 302, "{store}");
        assert_eq!(alice2.get(&t.url("/")).await.status, 302, "{store}");
        assert_eq!(
            bob.get(&t.url("/")).await.status,
            200,
            "{store}: nobody else"
        );

        let id = t
            .app
            .sessions
            .load(&input_for(&bob), Clock::system().now())
            .await
            .unwrap()
            .expect("bob's session")
            .id
            .clone();
        let (s, _) = revoke(
            &t,
            Some(ADMIN_TOKEN),
            &json!({"session_id": id}).to_string(),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(bob.get(&t.url("/")).await.status, 302, "{store}");
        t.stop().await;
    }
}

#[tokio::test]
async fn admin_api_is_guarded() {
    let r = RedisServer::start();
    let t = app(&r, "redis", &[]).await;
    let body = r#"{"subject":"x"}"#;
    assert_eq!(revoke(&t, None, body).await.0, 401);
    assert_eq!(
        revoke(&t, Some("wrong-token-wrong-token"), body).await.0,
        401
    );
    for bad in [
        "",
        "{}",
        "[]",
        r#"{"subject":""}"#,
        r#"{"subject":"a","session_id":"b"}"#,
        r#"{"user":"a"}"#,
    ] {
        assert_eq!(revoke(&t, Some(ADMIN_TOKEN), bad).await.0, 400, "{bad}");
    }
    t.stop().await;

    // No admin token: the API does not exist.
    let t = TestApp::start(&[]).await;
    assert_eq!(revoke(&t, Some(ADMIN_TOKEN), body).await.0, 404);
    t.stop().await;
    // Cookie store without Redis: nothing can be revoked server-side, and it says so.
    let admin = format!("admin.token={ADMIN_TOKEN}");
    let t = TestApp::start(&[&admin]).await;
    let (s, msg) = revoke(&t, Some(ADMIN_TOKEN), body).await;
    assert_eq!(s, 409, "{msg}");
    t.stop().await;
}

#[tokio::test]
async fn cookie_store_sign_out_deny_lists_the_old_cookie() {
    let r = RedisServer::start();
    let t = app(&r, "cookie", &[]).await;
    let mut b = Browser::new();
    assert_eq!(b.login(&t.url("/"), "gina", "").await.status, 302);
    let jar = b.jar.clone();
    assert_eq!(b.get(&t.url("/oauth2/sign_out")).await.status, 302);
    let mut replay = Browser::new();
    replay.jar = jar.clone();
    assert_eq!(replay.get(&t.url("/")).await.status, 302);

    // Without Redis the same stolen cookie still works until it expires: the documented limit.
    let secret = format!("cookie.secret={}", t.key.to_base64());
    let plain = TestApp::start(&[&secret]).await;
    let mut replay = Browser::new();
    replay.jar = jar;
    assert_eq!(replay.get(&plain.url("/")).await.status, 200);
    plain.stop().await;
    t.stop().await;
}

#[tokio::test]
async fn redis_lock_is_exclusive_and_released_only_by_its_holder() {
    let r = RedisServer::start();
    let t = app(&r, "redis", &[]).await;
    let s = &t.app.sessions;
    let a = s
        .try_lock("refresh:x", Duration::from_secs(5))
        .await
        .unwrap()
        .expect("free");
    assert!(s
        .try_lock("refresh:x", Duration::from_secs(5))
        .await
        .unwrap()
        .is_none());
    assert!(s.unlock(&a).await.unwrap());
    assert!(!s.unlock(&a).await.unwrap(), "already released");
    let short = s
        .try_lock("refresh:x", Duration::from_millis(50))
        .await
        .unwrap()
        .expect("free again");
    tokio::time::sleep(Duration::from_millis(120)).await;
    let next = s
        .try_lock("refresh:x", Duration::from_secs(5))
        .await
        .unwrap()
        .expect("expired by itself");
    assert!(
        !s.unlock(&short).await.unwrap(),
        "never frees someone else's lock"
    );
    assert!(s.unlock(&next).await.unwrap());
    t.stop().await;
}

/// The Redis store's refresh lock: a second holder waits (bounded) and gets it once released;
/// reload opens the record only with the request's ticket; store writes it back.
#[tokio::test]
async fn redis_refresh_lock_waits_reloads_and_stores() {
    let r = RedisServer::start();
    let t = app(&r, "redis", &[]).await;
    let sessions = &t.app.sessions;
    let one = sessions
        .refresh_lock(Duration::from_millis(150))
        .expect("redis store: a lock");
    let two = sessions
        .refresh_lock(Duration::from_secs(5))
        .expect("redis store: a lock");
    let ttl = Duration::from_secs(30);
    assert!(one.acquire("k".into(), ttl).await.unwrap());
    // Held elsewhere for longer than this lock's wait: gives up.
    let short = sessions
        .refresh_lock(Duration::from_millis(100))
        .expect("lock");
    assert!(!short.acquire("k".into(), ttl).await.unwrap());
    // Released while the other waits: it gets the lock within its wait.
    let waiter = tokio::spawn({
        let two = two.clone();
        async move { two.acquire("k".into(), ttl).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished(), "waits while the lock is held");
    one.release("k".into()).await;
    assert!(waiter.await.unwrap());
    two.release("k".into()).await;
    let mut c = r.conn();
    let locks: Vec<String> = redis::cmd("KEYS")
        .arg("portcullis:lock:*")
        .query(&mut c)
        .unwrap();
    assert!(locks.is_empty(), "released: {locks:?}");

    // Reload needs the ticket the request carries; the session alone cannot open the record.
    let mut s = session("erin", "sid-erin");
    s.refresh_token = Some("rt-1".into());
    let input = saved(&t, &s).await;
    let ticket = sessions.ticket(&input).expect("a ticket");
    assert_eq!(ticket.id, s.id);
    let again = one.reload(s.clone(), Some(ticket.clone())).await.unwrap();
    assert_eq!(again.as_ref(), Some(&s));
    let mut stranger = ticket.clone();
    stranger.key = portcullis::session::cookie::CookieKey::generate().to_base64();
    assert_eq!(one.reload(s.clone(), Some(stranger)).await.unwrap(), None);
    // Store writes the refreshed session under the same ticket: the old cookie opens it.
    let mut fresh = s.clone();
    fresh.refresh_token = Some("rt-2".into());
    fresh.refreshed_at = s.created_at + 10;
    one.store(Arc::new(fresh.clone()), Some(ticket))
        .await
        .unwrap();
    let now = Clock::system().now();
    assert_eq!(
        sessions.load(&input, now).await.unwrap(),
        Some(Arc::new(fresh))
    );
    t.stop().await;

    // The cookie store, even with Redis for the deny-list, has no refresh lock.
    let cookie = app(&r, "cookie", &[]).await;
    assert!(cookie
        .app
        .sessions
        .refresh_lock(Duration::from_secs(1))
        .is_none());
    assert!(cookie.app.sessions.ticket(&input).is_none());
    cookie.stop().await;
}

// --- back-channel logout -----------------------------------------------------------------------

fn key(file: &str, kid: &str) -> SigningKey {
    let path = format!("{}/tests/data/keys/{file}", env!("CARGO_MANIFEST_DIR"));
    SigningKey::from_pem(kid, Algorithm::RS256, &std::fs::read(path).unwrap()).unwrap()
}

/// An issuer that only publishes discovery and keys (logout tokens are signed in the test).
async fn key_issuer(k: &SigningKey) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let issuer = format!("http://{addr}");
    let state = Arc::new((issuer.clone(), jwks(&[k])));
    let router = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(|State(s): State<Arc<(String, Value)>>| async move {
                Json(json!({"issuer": s.0, "jwks_uri": format!("{}/jwks", s.0)}))
            }),
        )
        .route(
            "/jwks",
            get(|State(s): State<Arc<(String, Value)>>| async move { Json(s.1.clone()) }),
        )
        .with_state(state);
    tokio::spawn(async move { axum::serve(listener, router).await });
    issuer
}

async fn post_logout(t: &TestApp, token: &str) -> (u16, Option<String>, String) {
    let r = reqwest::Client::new()
        .post(t.url("/oauth2/backchannel_logout"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap();
    let cc = r
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), cc, r.text().await.unwrap())
}

fn session(sub: &str, sid: &str) -> Session {
    let now = Clock::system().now();
    Session {
        id: random_id(),
        user: sub.into(),
        email: String::new(),
        preferred_username: sub.into(),
        groups: vec![],
        id_token: None,
        access_token: None,
        created_at: now - 1,
        expires_at: now + 3600,
        claims: Default::default(),
        subject: sub.into(),
        sid: Some(sid.into()),
        ..Session::anonymous()
    }
}

/// Store `s` and return the request that carries its cookie.
async fn saved(t: &TestApp, s: &Session) -> CheckInput {
    let empty = CheckInput::new(Method::GET, "h", "/", HeaderMap::new(), "t".into());
    let lines = t.app.sessions.save(s, &empty).await.unwrap();
    let pairs: Vec<String> = lines
        .iter()
        .map(|l| cookie::Cookie::parse(l.clone()).unwrap())
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect();
    let mut h = HeaderMap::new();
    h.insert("cookie", HeaderValue::from_str(&pairs.join("; ")).unwrap());
    CheckInput::new(Method::GET, "h", "/", h, "t".into())
}

#[tokio::test]
async fn back_channel_logout_verifies_the_token_and_ends_the_named_sessions() {
    let k = key("rsa1.pem", "k1");
    let issuer = key_issuer(&k).await;
    for store in ["redis", "cookie"] {
        let r = RedisServer::start();
        let idp = crate::support::test_idp().await;
        let url = format!("session.redis.url={}", r.url());
        let st = format!("session.store={store}");
        let iss = format!("oidc.issuer_url={issuer}");
        let t = TestApp::start_full(idp, &[&url, &st, &iss], None, false).await;
        let now = Clock::system().now();
        let a1 = saved(&t, &session("alice", "idp-session-1")).await;
        let a2 = saved(&t, &session("alice", "idp-session-2")).await;
        let load = |i: CheckInput| {
            let app = t.app.clone();
            async move { app.sessions.load(&i, Clock::system().now()).await.unwrap() }
        };
        let claims = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
            let mut c = json!({
                "iss": issuer, "aud": CLIENT_ID, "iat": now, "exp": now + 120,
                "jti": random_id(), "sid": "idp-session-1", "sub": "alice",
                "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
            })
            .as_object()
            .cloned()
            .unwrap();
            f(&mut c);
            Value::Object(c)
        };

        // Refused: forged (another key), wrong audience, nonce, no event, missing token.
        let forged = key("rsa2.pem", "k1").sign(&claims(&|_| {}));
        let (s, cc, body) = post_logout(&t, &forged).await;
        assert_eq!((s, cc.as_deref()), (400, Some("no-store")), "{body}");
        for bad in [
            claims(&|c| {
                c.insert("aud".into(), json!("someone-else"));
            }),
            claims(&|c| {
                c.insert("nonce".into(), json!("n"));
            }),
            claims(&|c| {
                c.remove("events");
            }),
            claims(&|c| {
                c.remove("sid");
                c.remove("sub");
            }),
        ] {
            assert_eq!(post_logout(&t, &k.sign(&bad)).await.0, 400, "{bad}");
        }
        let missing = reqwest::Client::new()
            .post(t.url("/oauth2/backchannel_logout"))
            .form(&[("other", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status().as_u16(), 400);
        assert!(
            load(a1.clone()).await.is_some(),
            "{store}: nothing revoked yet"
        );

        // By sid: only that IdP session ends.
        let token = k.sign(&claims(&|_| {}));
        let (s, cc, body) = post_logout(&t, &token).await;
        assert_eq!(
            (s, cc.as_deref()),
            (200, Some("no-store")),
            "{store}: {body}"
        );
        assert!(load(a1.clone()).await.is_none(), "{store}");
        assert!(load(a2.clone()).await.is_some(), "{store}: other sid kept");
        // Replayed: refused.
        assert_eq!(post_logout(&t, &token).await.0, 400);
        // By sub alone: every session of the subject.
        let by_sub = k.sign(&claims(&|c| {
            c.remove("sid");
        }));
        assert_eq!(post_logout(&t, &by_sub).await.0, 200);
        assert!(load(a2.clone()).await.is_none(), "{store}");
        t.stop().await;
    }

    // Without Redis there is nothing to revoke: the route is not offered.
    let t = TestApp::start(&[]).await;
    assert_eq!(post_logout(&t, "x.y.z").await.0, 404);
    t.stop().await;
}

// --- Sentinel and Cluster -----------------------------------------------------------------------

fn sentinel(master_port: u16, quorum: u32) -> RedisServer {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("portcullis-sentinel-{port}-{}", random_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode no\nsentinel resolve-hostnames no\n\
             sentinel monitor mymaster 127.0.0.1 {master_port} {quorum}\n\
             sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("redis.log")).unwrap();
    let child = Command::new("redis-server")
        .arg(&conf)
        .arg("--sentinel")
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let s = RedisServer {
        port,
        dir,
        child: Some(child),
        args: vec![],
    };
    s.wait_ready();
    s
}

#[tokio::test]
async fn sentinel_failover_keeps_sessions() {
    let master = RedisServer::start();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    let sentinels: Vec<RedisServer> = (0..3).map(|_| sentinel(master.port, 2)).collect();
    let urls: Vec<String> = sentinels
        .iter()
        .map(|s| format!("redis://127.0.0.1:{}", s.port))
        .collect();
    let set_urls = format!("session.redis.sentinel_urls={}", urls.join(","));
    let t = TestApp::start(&[
        "session.store=redis",
        &set_urls,
        "session.redis.sentinel_master=mymaster",
        "session.redis.timeout=500ms",
    ])
    .await;
    let mut b = Browser::new();
    assert_eq!(b.login(&t.url("/"), "henry", "").await.status, 302);
    assert_eq!(b.get(&t.url("/")).await.status, 200);
    // Wait until the replica has the session, then fail over to it.
    let mut rc = replica.conn();
    for _ in 0..100 {
        let n: Vec<String> = redis::cmd("KEYS")
            .arg("portcullis:s:*")
            .query(&mut rc)
            .unwrap();
        if !n.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut sc = sentinels[0].conn();
    let _: () = redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg("mymaster")
        .query(&mut sc)
        .unwrap();
    let mut promoted = false;
    for _ in 0..100 {
        let addr: Vec<String> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg("mymaster")
            .query(&mut sc)
            .unwrap();
        if addr.get(1) == Some(&replica.port.to_string()) {
            promoted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(promoted, "sentinel promoted the replica");
    // Wait until the old master has been told it is a replica now (before that, Redis itself
    // accepts writes there that the failover then drops).
    // Sentinel reconfigures the old master as a replica of the new one when it next inspects it
    // (up to its 10 s INFO period); do what it will do now, to keep the test short.
    let _: redis::RedisResult<()> = redis::Client::open(master.url())
        .and_then(|c| c.get_connection())
        .and_then(|mut c| {
            redis::cmd("REPLICAOF")
                .arg("127.0.0.1")
                .arg(replica.port)
                .query(&mut c)
        });
    // Sentinel kills the clients of a demoted master: a fresh connection for every look.
    let mut demoted = false;
    for _ in 0..100 {
        let info: Option<String> = redis::Client::open(master.url())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("INFO").arg("replication").query(&mut c))
            .ok();
        if info.is_some_and(|i| i.contains("role:slave")) {
            demoted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(demoted, "the old master became a replica");
    // The old master is demoted to a read-only replica: writes there fail, the proxy asks the
    // sentinels again and follows the new master. The session is intact.
    // Up to 20 s: on a loaded machine the sentinels' view and the reconnect take a while.
    let mut last = 0;
    for _ in 0..100 {
        last = b.get(&t.url("/")).await.status;
        let mut fresh = Browser::new();
        if last == 200 && fresh.login(&t.url("/"), "ida", "").await.status == 302 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(last, 200, "session intact after failover");
    let mut nc = replica.conn();
    let n: Vec<String> = redis::cmd("KEYS")
        .arg("portcullis:s:*")
        .query(&mut nc)
        .unwrap();
    assert_eq!(
        n.len(),
        2,
        "ida's new session was written to the new master"
    );
    t.stop().await;
    drop(sentinels);
}

#[tokio::test]
async fn cluster_single_node_stores_sessions() {
    let node = RedisServer::start_with(&["--cluster-enabled", "yes"]);
    let mut c = node.conn();
    let _: () = redis::cmd("CLUSTER")
        .arg("ADDSLOTSRANGE")
        .arg(0)
        .arg(16383)
        .query(&mut c)
        .unwrap();
    for _ in 0..100 {
        let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c).unwrap();
        if info.contains("cluster_state:ok") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let urls = format!("session.redis.cluster_urls=redis://127.0.0.1:{}", node.port);
    let admin = format!("admin.token={ADMIN_TOKEN}");
    let t = TestApp::start(&["session.store=redis", &urls, &admin]).await;
    let mut b = Browser::new();
    assert_eq!(b.login(&t.url("/"), "jane", "").await.status, 302);
    assert_eq!(b.get(&t.url("/")).await.status, 200);
    assert_eq!(readyz(&t).await, 200);
    let (s, _) = revoke(&t, Some(ADMIN_TOKEN), r#"{"subject":"jane"}"#).await;
    assert_eq!(s, 200);
    assert_eq!(b.get(&t.url("/")).await.status, 302);
    t.stop().await;
}
