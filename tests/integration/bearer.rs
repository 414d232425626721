//! Bearer JWTs through the HTTP check listener: a small in-process issuer serves a JWKS whose
//! keys the tests rotate, take down and count fetches of.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Json;
use jsonwebtoken::Algorithm;
use portcullis::clock::Clock;
use portcullis::token::testkit::{jwks, sign_hs256, SigningKey};
use serde_json::{json, Value};

use crate::support::{Browser, TestApp};

fn key(file: &str, kid: &str, alg: Algorithm) -> SigningKey {
    let path = format!("{}/tests/data/keys/{file}", env!("CARGO_MANIFEST_DIR"));
    SigningKey::from_pem(kid, alg, &std::fs::read(path).unwrap()).unwrap()
}

/// A JWKS endpoint (and discovery document) that counts its fetches.
struct KeyServer {
    issuer: String,
    state: Arc<KeyState>,
}

struct KeyState {
    issuer: String,
    jwks: Mutex<Value>,
    fetches: AtomicUsize,
    down: AtomicBool,
}

async fn serve_jwks(State(s): State<Arc<KeyState>>) -> axum::response::Response {
    if s.down.load(Ordering::SeqCst) {
        return http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    s.fetches.fetch_add(1, Ordering::SeqCst);
    Json(s.jwks.lock().unwrap().clone()).into_response()
}

async fn serve_discovery(State(s): State<Arc<KeyState>>) -> Json<Value> {
    Json(json!({"issuer": s.issuer, "jwks_uri": format!("{}/jwks", s.issuer)}))
}

impl KeyServer {
    async fn start(keys: &[&SigningKey]) -> KeyServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let state = Arc::new(KeyState {
            issuer: issuer.clone(),
            jwks: Mutex::new(jwks(keys)),
            fetches: AtomicUsize::new(0),
            down: AtomicBool::new(false),
        });
        let router = axum::Router::new()
            .route("/jwks", get(serve_jwks))
            .route("/.well-known/openid-configuration", get(serve_discovery))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        KeyServer { issuer, state }
    }

    fn set_keys(&self, keys: &[&SigningKey]) {
        *self.state.jwks.lock().unwrap() = jwks(keys);
    }

    fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    fn toml(&self) -> String {
        format!(
            "[[bearer.issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\ngroups_claim = \"roles\"\n",
            self.issuer
        )
    }
}

async fn app_with(servers: &[&KeyServer], sets: &[&str]) -> TestApp {
    let idp = crate::support::test_idp().await;
    let mut all = vec!["bearer.enabled=true"];
    all.extend_from_slice(sets);
    let toml: String = servers.iter().map(|s| s.toml()).collect();
    TestApp::start_full(idp, &all, Some(&toml), true).await
}

fn now() -> i64 {
    Clock::system().now()
}

fn claims(iss: &str) -> Value {
    json!({
        "iss": iss, "aud": "api", "sub": "svc-1", "exp": now() + 600, "iat": now(),
        "email": "svc@example.com", "roles": ["readers", "writers"],
    })
}

async fn call(t: &TestApp, token: &str, accept: &str) -> crate::support::Answer {
    Browser::new()
        .send(
            reqwest::Method::GET,
            &t.url("/api/things"),
            &[
                ("authorization", &format!("Bearer {token}")),
                ("accept", accept),
            ],
        )
        .await
}

fn assert_invalid_token(a: &crate::support::Answer, what: &str) {
    assert_eq!(a.status, 401, "{what}: {}", a.body);
    let challenge = a.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\", error_description=\""),
        "{what}: {challenge}"
    );
    assert!(a.header("location").is_none(), "{what}: never a redirect");
    assert!(a.set_cookies().is_empty(), "{what}: no cookies");
}

#[tokio::test]
async fn valid_tokens_of_every_key_type_pass_with_identity_headers() {
    let rsa = key("rsa1.pem", "rsa1", Algorithm::RS256);
    let ec256 = key("ec256.pem", "ec256", Algorithm::ES256);
    let ec384 = key("ec384.pem", "ec384", Algorithm::ES384);
    let ed = key("ed25519.pem", "ed", Algorithm::EdDSA);
    let ks = KeyServer::start(&[&rsa, &ec256, &ec384, &ed]).await;
    let t = app_with(
        &[&ks],
        &[
            "headers.pass_access_token=true",
            "headers.set_authorization_header=true",
        ],
    )
    .await;
    for k in [&rsa, &ec256, &ec384, &ed] {
        let token = k.sign(&claims(&ks.issuer));
        let a = call(&t, &token, "text/html").await;
        assert_eq!(a.status, 200, "{}: {}", k.kid, a.body);
        assert_eq!(a.header("x-auth-request-user"), Some("svc-1"));
        assert_eq!(a.header("x-auth-request-email"), Some("svc@example.com"));
        assert_eq!(a.header("x-auth-request-groups"), Some("readers,writers"));
        assert_eq!(
            a.header("x-auth-request-access-token"),
            Some(token.as_str())
        );
        assert_eq!(
            a.header("authorization"),
            Some(format!("Bearer {token}").as_str()),
            "the caller's own token"
        );
        assert!(a.set_cookies().is_empty());
    }
    // The same token again is a cache hit.
    let stats = &t.app.bearers.as_ref().unwrap().stats;
    let hits = stats.cache_hits.load(Ordering::Relaxed);
    let mut c = claims(&ks.issuer);
    c["jti"] = json!("once-more");
    let token = rsa.sign(&c);
    assert_eq!(call(&t, &token, "*/*").await.status, 200);
    assert_eq!(call(&t, &token, "*/*").await.status, 200);
    assert_eq!(stats.cache_hits.load(Ordering::Relaxed), hits + 1);
    assert_eq!(ks.fetches(), 1, "one JWKS fetch at start, none since");
    t.stop().await;
}

#[tokio::test]
async fn attacks_are_401_and_an_unknown_kid_flood_fetches_at_most_once() {
    let rsa = key("rsa1.pem", "rsa1", Algorithm::RS256);
    let other = key("other_rsa.pem", "rsa1", Algorithm::RS256);
    let stranger = key("other_rsa.pem", "stranger", Algorithm::RS256);
    let pub_pem = std::fs::read(format!(
        "{}/tests/data/keys/rsa1.pub.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let ks = KeyServer::start(&[&rsa]).await;
    let unconfigured = KeyServer::start(&[&stranger]).await;
    let t = app_with(&[&ks], &[]).await;
    let c = || claims(&ks.issuer);
    let with = |k: &str, v: Value| {
        let mut c = c();
        c[k] = v;
        c
    };
    let good = rsa.sign(&c());
    let parts: Vec<&str> = good.split('.').collect();
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let kid = |k: &str| {
        let mut h = rsa.header();
        h.kid = Some(k.into());
        rsa.sign_with(&h, &c())
    };
    let mut crit = rsa.header();
    crit.crit = Some(vec!["exp".into()]);
    let mut no_exp = c();
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut flipped = parts[2].as_bytes().to_vec();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    let attacks: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!("{}.{}.", b64(&json!({"alg": "none"})), parts[1]),
        ),
        (
            "alg none with signature",
            format!("{}.{}.{}", b64(&json!({"alg": "none"})), parts[1], parts[2]),
        ),
        (
            "HS256 with the RSA public key",
            sign_hs256("rsa1", &pub_pem, &c()),
        ),
        ("kid traversal", kid("../../../etc/passwd")),
        ("kid SQL", kid("1' UNION SELECT 'key' --")),
        ("kid URL", kid("http://127.0.0.1:1/evil.json")),
        ("expired", rsa.sign(&with("exp", json!(now() - 3600)))),
        ("not yet valid", rsa.sign(&with("nbf", json!(now() + 3600)))),
        (
            "wrong iss",
            rsa.sign(&with("iss", json!("https://evil.example"))),
        ),
        ("wrong aud", rsa.sign(&with("aud", json!("not-api")))),
        (
            "aud array without ours",
            rsa.sign(&with("aud", json!(["x", "y"]))),
        ),
        ("missing exp", rsa.sign(&no_exp)),
        (
            "JWE-shaped",
            format!(
                "{}.{}.{}.{}.{}",
                parts[0], parts[1], parts[2], parts[1], parts[2]
            ),
        ),
        ("crit header", rsa.sign_with(&crit, &c())),
        ("another key under our kid", other.sign(&c())),
        (
            "unconfigured issuer",
            stranger.sign(&claims(&unconfigured.issuer)),
        ),
        ("bad base64", format!("{}.%%%.{}", parts[0], parts[2])),
        (
            "100 KB",
            format!("{}.{}.{}", parts[0], "A".repeat(100 * 1024), parts[2]),
        ),
        (
            "signature bit flip",
            format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                String::from_utf8(flipped).unwrap()
            ),
        ),
        ("opaque", "not-a-jwt".into()),
    ];
    let before = ks.fetches();
    for (name, token) in &attacks {
        assert_invalid_token(&call(&t, token, "text/html").await, name);
    }
    // A flood of random kids: at most one refetch per refetch_interval (30s by default).
    for i in 0..40 {
        assert_invalid_token(
            &call(&t, &kid(&format!("random-{i}")), "*/*").await,
            "flood",
        );
    }
    let refetches = ks.fetches() - before;
    assert!(
        refetches <= 1,
        "JWKS fetched {refetches} times for unknown kids"
    );
    assert_eq!(
        unconfigured.fetches(),
        0,
        "an unconfigured issuer is never contacted"
    );
    assert_eq!(call(&t, &good, "*/*").await.status, 200, "still works");
    t.stop().await;
}

#[tokio::test]
async fn key_rotation_old_tokens_keep_working_new_kid_after_one_refetch() {
    let k1 = key("rsa1.pem", "k1", Algorithm::RS256);
    let k2 = key("rsa2.pem", "k2", Algorithm::RS256);
    let ks = KeyServer::start(&[&k1]).await;
    let t = app_with(&[&ks], &[]).await;
    let old = k1.sign(&claims(&ks.issuer));
    assert_eq!(call(&t, &old, "*/*").await.status, 200);
    assert_eq!(ks.fetches(), 1);
    // The IdP rotates: publishes k2 next to k1 and signs new tokens with it.
    ks.set_keys(&[&k2, &k1]);
    let new = k2.sign(&claims(&ks.issuer));
    let a = call(&t, &new, "*/*").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(ks.fetches(), 2, "exactly one refetch for the new kid");
    let mut c = claims(&ks.issuer);
    c["jti"] = json!("fresh");
    let old2 = k1.sign(&c);
    assert_eq!(
        call(&t, &old2, "*/*").await.status,
        200,
        "old key still in the set"
    );
    assert_eq!(ks.fetches(), 2);
    t.stop().await;
}

#[tokio::test]
async fn jwks_down_keeps_cached_keys_and_unloaded_issuers_are_not_ready() {
    let k1 = key("rsa1.pem", "k1", Algorithm::RS256);
    let ks = KeyServer::start(&[&k1]).await;
    let dead = KeyServer::start(&[&k1]).await;
    dead.set_down(true);
    let t = app_with(&[&ks, &dead], &[]).await;
    // Keys loaded once; the endpoint goes down; fresh tokens (not in the token cache) still pass.
    ks.set_down(true);
    for i in 0..3 {
        let mut c = claims(&ks.issuer);
        c["jti"] = json!(i);
        assert_eq!(call(&t, &k1.sign(&c), "*/*").await.status, 200);
    }
    // The issuer whose JWKS never loaded: readiness says so, its tokens get 503 (not 401, not 200).
    let ready = reqwest::get(format!("http://{}/readyz", t.admin))
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    assert!(ready.text().await.unwrap().contains(&dead.issuer));
    let a = call(&t, &k1.sign(&claims(&dead.issuer)), "*/*").await;
    assert_eq!(a.status, 503, "{}", a.body);
    t.stop().await;
}

#[tokio::test]
async fn invalid_token_never_falls_back_to_the_cookie_unless_configured() {
    let k1 = key("rsa1.pem", "k1", Algorithm::RS256);
    let ks = KeyServer::start(&[&k1]).await;
    let mut expired = claims(&ks.issuer);
    expired["exp"] = json!(now() - 3600);
    let expired = k1.sign(&expired);
    for (fallback, want) in [(false, 401), (true, 200)] {
        let set = format!("bearer.fallback_to_cookie={fallback}");
        let t = app_with(&[&ks], &[&set]).await;
        let mut b = Browser::new();
        assert_eq!(b.login(&t.url("/"), "alice", "").await.status, 302);
        let a = b
            .send(
                reqwest::Method::GET,
                &t.url("/x"),
                &[
                    ("authorization", &format!("Bearer {expired}")),
                    ("accept", "text/html"),
                ],
            )
            .await;
        assert_eq!(a.status, want, "fallback={fallback}: {}", a.body);
        if want == 200 {
            assert_eq!(a.header("x-auth-request-user"), Some("alice"));
        }
        t.stop().await;
    }
}

#[tokio::test]
async fn the_login_issuers_id_token_is_accepted_and_groups_rules_apply() {
    let k1 = key("rsa1.pem", "k1", Algorithm::RS256);
    let ks = KeyServer::start(&[&k1]).await;
    let t = app_with(
        &[&ks],
        &[
            "headers.set_authorization_header=true",
            "authz.allowed_groups=admins",
        ],
    )
    .await;
    let mut b = Browser::new();
    assert_eq!(b.login(&t.url("/"), "carol", "admins").await.status, 302);
    let id_token =
        b.get(&t.url("/")).await.header("authorization").unwrap()["Bearer ".len()..].to_string();
    let a = call(&t, &id_token, "*/*").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("x-auth-request-user"), Some("carol"));
    assert_eq!(a.header("x-auth-request-groups"), Some("admins"));
    // A token of the other issuer without the group is refused by the same rule.
    let a = call(&t, &k1.sign(&claims(&ks.issuer)), "*/*").await;
    assert_eq!(a.status, 403);
    t.stop().await;
}
