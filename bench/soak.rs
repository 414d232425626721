//! Soak (issue 11): a bounded run of mixed traffic against a release build of portcullis, every
//! answer checked against the one it must be, RSS and open file descriptors of portcullis sampled
//! all along.
//!
//! It starts everything it needs: the development issuer (in this process, for the logins), a
//! JWKS server (in this process, RS256 keys from tests/data/keys) for bearer tokens, and
//! `portcullis` itself (the binary, a child process, with a config file written here: bearer on,
//! per-route rules, a 16 KiB head limit). Then `CONNECTIONS` HTTP/1.1 keep-alive connections
//! (hyper, one task each) and `GRPC_STREAMS` gRPC `Check` calls in flight on one HTTP/2
//! connection send a random mix of the kinds below for `SECONDS`. Exits 1 on any wrong answer,
//! any 5xx, any transport error, or memory / descriptors that are not flat.
//!
//!   bench/soak.sh                           (or, by hand:)
//!   cargo build --release --bin portcullis   # on its own: the binary a user gets
//!   cargo build --release --example soak     # dev-dependency features stay out of the binary
//!   target/release/examples/soak [SECONDS=600]
//!
//! Environment: `PORTCULLIS_BIN` (default target/release/portcullis), `CONNECTIONS` (50),
//! `THREADS` (2, the generator's runtime workers), `GRPC_STREAMS` (10, 0 = no gRPC), `SAMPLE`
//! (seconds between RSS/fd samples, 10), `FRESH_PER_SEC` (20: new bearer tokens signed per
//! second, each one an uncached RS256 verification in portcullis), `LOG` (portcullis's
//! `log.level`, info).
//!
//! "Flat": from the baseline sample (t = min(120 s, SECONDS/5): caches, pools and the allocator
//! have warmed up) to the end, RSS never exceeds the baseline by more than 2 MiB, and open fds
//! never exceed the highest count seen up to the baseline by more than 4. Runs shorter than
//! 120 s (smoke runs) report memory but are not failed on it: too short to tell.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use envoy_types::ext_authz::v3::pb::{CheckRequest, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use jsonwebtoken::Algorithm;
use portcullis::clock::Clock;
use portcullis::dev_idp::{self, DevClient};
use portcullis::token::testkit::{jwks, sign_hs256, SigningKey};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const CLIENT_ID: &str = "soak-client";
const CLIENT_SECRET: &str = "soak-client-secret";
const AUDIENCE: &str = "soak-api";
/// `server.max_header_bytes` of the soak's portcullis (the smallest allowed).
const MAX_HEAD: usize = 16384;
const RSS_SLACK_KIB: u64 = 2048;
const FD_SLACK: u64 = 4;

/// Every kind of request, in the order of the result table.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Cookie,
    CookieSpoofed,
    CookieAdmin,
    BearerCached,
    BearerFresh,
    BearerBad,
    Browser,
    ApiNoCredentials,
    GarbageCookie,
    OversizedCookie,
    NearLimitCookie,
    SpoofedNoCredentials,
    UnderscoreHeader,
    AmbiguousPath,
    PolicyDenied,
    Public,
}

impl Kind {
    const ALL: [Kind; 16] = [
        Kind::Cookie,
        Kind::CookieSpoofed,
        Kind::CookieAdmin,
        Kind::BearerCached,
        Kind::BearerFresh,
        Kind::BearerBad,
        Kind::Browser,
        Kind::ApiNoCredentials,
        Kind::GarbageCookie,
        Kind::OversizedCookie,
        Kind::NearLimitCookie,
        Kind::SpoofedNoCredentials,
        Kind::UnderscoreHeader,
        Kind::AmbiguousPath,
        Kind::PolicyDenied,
        Kind::Public,
    ];

    /// Relative weight in the mix.
    fn weight(self) -> u32 {
        match self {
            Kind::Cookie => 25,
            Kind::CookieSpoofed => 5,
            Kind::CookieAdmin => 5,
            Kind::BearerCached => 15,
            Kind::BearerFresh => 2,
            Kind::BearerBad => 6,
            Kind::Browser => 8,
            Kind::ApiNoCredentials => 5,
            Kind::GarbageCookie => 8,
            Kind::OversizedCookie => 1,
            Kind::NearLimitCookie => 1,
            Kind::SpoofedNoCredentials => 5,
            Kind::UnderscoreHeader => 4,
            Kind::AmbiguousPath => 4,
            Kind::PolicyDenied => 5,
            Kind::Public => 2,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Cookie => "valid cookie → 200 alice",
            Kind::CookieSpoofed => "valid cookie + spoofed identity headers → 200 alice (overwritten)",
            Kind::CookieAdmin => "valid cookie, admin on /admin/* → 200 carol",
            Kind::BearerCached => "bearer RS256, cached → 200",
            Kind::BearerFresh => "bearer RS256, fresh (never seen) → 200",
            Kind::BearerBad => "bearer expired / forged / HS256 / alg none / tampered / wrong aud / unknown kid → 401",
            Kind::Browser => "no credentials, browser → 302 to the IdP with state",
            Kind::ApiNoCredentials => "no credentials, API (Accept JSON or /api/*) → 401",
            Kind::GarbageCookie => "random / truncated / bit-flipped / long / chunk-mixed cookie → 302",
            Kind::OversizedCookie => "head of 3× the 16 KiB limit → 431 (gRPC: 302)",
            Kind::NearLimitCookie => "head 0–4 KiB over the 16 KiB limit → 431 (gRPC: 302)",
            Kind::SpoofedNoCredentials => "spoofed identity / X-Forwarded-* headers, no credentials → 302",
            Kind::UnderscoreHeader => "underscore identity header (x_auth_request_user) → 400",
            Kind::AmbiguousPath => "ambiguous path (/admin//../x, %2f, %2e%2e, %25, %00) → 400",
            Kind::PolicyDenied => "rule denies (/internal/*, /admin/* without the group) → 403",
            Kind::Public => "public rule, no credentials → 200 anonymous",
        }
    }

    /// A deny is due: any 2xx is an unexpected allow.
    fn must_deny(self) -> bool {
        !matches!(
            self,
            Kind::Cookie
                | Kind::CookieSpoofed
                | Kind::CookieAdmin
                | Kind::BearerCached
                | Kind::BearerFresh
                | Kind::Public
        )
    }
}

/// What an answer must be.
#[derive(Clone, Debug)]
enum Expect {
    /// 200 with exactly one of each identity header, these values.
    Allow {
        user: String,
        email: String,
        groups: String,
    },
    /// 200 with an empty user.
    Anonymous,
    /// 302 to the IdP's authorization endpoint with state, and a pending-login cookie.
    Login,
    /// 401 JSON with `WWW-Authenticate: Bearer`, no redirect.
    Unauthorized,
    /// 401 with `WWW-Authenticate: Bearer error="invalid_token"…`.
    InvalidToken,
    /// Exactly this status.
    Status(u16),
}

/// One request to send.
struct Case {
    /// The kind sent: a fresh-bearer request when no fresh token is ready is a cached one.
    kind: Kind,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    expect: Expect,
}

/// What came back, from either adapter.
struct Answer {
    status: u16,
    headers: HeaderMap,
}

/// Fixed material the cases are made from.
struct Material {
    host: String,
    authorize: String,
    alice_cookie: String,
    alice_sealed: String,
    carol_cookie: String,
    cached: Vec<(String, String)>,
    bad: Vec<String>,
    fresh: Mutex<Vec<(String, String)>>,
}

fn h(name: &str, value: &str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_bytes(name.as_bytes()).expect("header name"),
        HeaderValue::from_str(value).expect("header value"),
    )
}

const HTML: &str = "text/html,application/xhtml+xml";

impl Material {
    fn alice(&self) -> Expect {
        Expect::Allow {
            user: "alice".into(),
            email: "alice@example.com".into(),
            groups: "staff".into(),
        }
    }

    fn bearer(user: &str) -> Expect {
        Expect::Allow {
            user: user.into(),
            email: format!("{user}@svc.example.com"),
            groups: "readers,writers".into(),
        }
    }

    fn case(&self, mut kind: Kind, rng: &mut StdRng, grpc: bool) -> Case {
        let mut path = format!("/app/page/{}", rng.gen_range(0..1000));
        let mut headers = vec![h("accept", HTML)];
        let expect = match kind {
            Kind::Cookie => {
                headers.push(h("cookie", &self.alice_cookie));
                self.alice()
            }
            Kind::CookieSpoofed => {
                headers.push(h("cookie", &self.alice_cookie));
                headers.push(h("x-auth-request-user", "admin"));
                headers.push(h("x-auth-request-email", "admin@example.com"));
                headers.push(h("x-auth-request-groups", "admins"));
                headers.push(h("x-forwarded-user", "admin"));
                self.alice()
            }
            Kind::CookieAdmin => {
                path = format!("/admin/panel/{}", rng.gen_range(0..100));
                headers.push(h("cookie", &self.carol_cookie));
                Expect::Allow {
                    user: "carol".into(),
                    email: "carol@example.com".into(),
                    groups: "admins".into(),
                }
            }
            Kind::BearerCached | Kind::BearerFresh => {
                path = format!("/api/things/{}", rng.gen_range(0..1000));
                headers[0] = h("accept", "application/json");
                let fresh = if kind == Kind::BearerFresh {
                    self.fresh.lock().ok().and_then(|mut f| f.pop())
                } else {
                    None
                };
                let (token, user) = match fresh {
                    Some(t) => t,
                    None => {
                        kind = Kind::BearerCached;
                        self.cached[rng.gen_range(0..self.cached.len())].clone()
                    }
                };
                headers.push(h("authorization", &format!("Bearer {token}")));
                Self::bearer(&user)
            }
            Kind::BearerBad => {
                if rng.gen_bool(0.5) {
                    path = format!("/api/things/{}", rng.gen_range(0..1000));
                }
                headers[0] = h("accept", "application/json");
                let token = &self.bad[rng.gen_range(0..self.bad.len())];
                headers.push(h("authorization", &format!("Bearer {token}")));
                if rng.gen_bool(0.3) {
                    // A valid session cookie does not rescue an invalid token.
                    headers.push(h("cookie", &self.alice_cookie));
                }
                Expect::InvalidToken
            }
            Kind::Browser => Expect::Login,
            Kind::ApiNoCredentials => {
                if rng.gen_bool(0.5) {
                    headers[0] = h("accept", "application/json");
                } else {
                    path = format!("/api/things/{}", rng.gen_range(0..1000));
                }
                Expect::Unauthorized
            }
            Kind::GarbageCookie => {
                headers.push(h("cookie", &self.garbage_cookie(rng)));
                Expect::Login
            }
            Kind::OversizedCookie | Kind::NearLimitCookie => {
                let len = if kind == Kind::OversizedCookie {
                    3 * MAX_HEAD + rng.gen_range(0..4096)
                } else {
                    MAX_HEAD + rng.gen_range(1..4096)
                };
                let v: String = (0..len)
                    .map(|_| char::from(b'a' + rng.gen_range(0..26)))
                    .collect();
                headers.push(h("cookie", &format!("_portcullis={v}")));
                // gRPC checks are bounded by the message size, not the head limit: there a
                // long cookie is one that does not open. Over HTTP the limit is exact, also for
                // a head that arrives whole (`http::serve::head_size`).
                if grpc {
                    Expect::Login
                } else {
                    Expect::Status(431)
                }
            }
            Kind::SpoofedNoCredentials => {
                headers.push(h("x-auth-request-user", "admin"));
                headers.push(h("x-auth-request-email", "admin@example.com"));
                headers.push(h("x-auth-request-groups", "admins"));
                headers.push(h("x-forwarded-user", "admin"));
                headers.push(h("x-forwarded-email", "admin@example.com"));
                headers.push(h("x-forwarded-uri", "/public/ok"));
                headers.push(h("x-forwarded-host", "public.example.com"));
                headers.push(h("x-original-url", "/public/ok"));
                Expect::Login
            }
            Kind::UnderscoreHeader => {
                let name = [
                    "x_auth_request_user",
                    "x-auth_request-email",
                    "x_auth_request_groups",
                    "x-auth-request_preferred-username",
                ][rng.gen_range(0..4)];
                headers.push(h(name, "admin"));
                if rng.gen_bool(0.5) {
                    headers.push(h("cookie", &self.alice_cookie));
                }
                Expect::Status(400)
            }
            Kind::AmbiguousPath => {
                path = [
                    "/admin//../x",
                    "/public//../admin/x",
                    "/public/%2e%2e/admin/x",
                    "/public/..%2fadmin",
                    "/app%2fadmin",
                    "/public/%252e%252e/admin",
                    "/public/%00/x",
                ][rng.gen_range(0..7)]
                .to_string();
                if rng.gen_bool(0.5) {
                    headers.push(h("cookie", &self.alice_cookie));
                }
                Expect::Status(400)
            }
            Kind::PolicyDenied => {
                path = if rng.gen_bool(0.5) {
                    format!("/internal/{}", rng.gen_range(0..100))
                } else {
                    format!("/admin/panel/{}", rng.gen_range(0..100))
                };
                headers.push(h("cookie", &self.alice_cookie));
                Expect::Status(403)
            }
            Kind::Public => {
                path = format!("/public/{}", rng.gen_range(0..100));
                Expect::Anonymous
            }
        };
        Case {
            kind,
            path,
            headers,
            expect,
        }
    }

    fn garbage_cookie(&self, rng: &mut StdRng) -> String {
        let sealed = &self.alice_sealed;
        let value = match rng.gen_range(0..6) {
            0 => {
                let mut b = vec![0u8; rng.gen_range(1..400)];
                rng.fill(&mut b[..]);
                URL_SAFE_NO_PAD.encode(b)
            }
            1 => sealed[..rng.gen_range(0..sealed.len())].to_string(),
            2 => {
                // One character changed anywhere in the sealed value.
                let mut b = sealed.clone().into_bytes();
                let i = rng.gen_range(0..b.len());
                b[i] = if b[i] == b'A' { b'B' } else { b'A' };
                String::from_utf8(b).expect("ascii")
            }
            3 => "x".repeat(rng.gen_range(1..6000)),
            4 => {
                // A chunked session whose chunks do not belong together.
                let half = sealed.len() / 2;
                return format!(
                    "_portcullis_0={}; _portcullis_1={}",
                    &sealed[..half],
                    URL_SAFE_NO_PAD.encode(rng.gen::<[u8; 32]>())
                );
            }
            _ => {
                // A pending-login cookie that was never issued, and no session.
                return format!(
                    "_portcullis_csrf_{}={}",
                    rng.gen_range(0..1_000_000),
                    URL_SAFE_NO_PAD.encode(rng.gen::<[u8; 32]>())
                );
            }
        };
        format!("_portcullis={value}")
    }
}

fn verdict(m: &Material, expect: &Expect, a: &Answer) -> Result<(), String> {
    let one = |name: &str| -> Result<String, String> {
        let all: Vec<_> = a.headers.get_all(name).iter().collect();
        match all.as_slice() {
            [v] => Ok(v.to_str().unwrap_or("<not text>").to_string()),
            [] => Err(format!("no {name}")),
            _ => Err(format!("{} values of {name}", all.len())),
        }
    };
    let status = a.status;
    match expect {
        Expect::Allow {
            user,
            email,
            groups,
        } => {
            if status != 200 {
                return Err(format!("{status}, expected 200"));
            }
            for (name, want) in [
                ("x-auth-request-user", user),
                ("x-auth-request-email", email),
                ("x-auth-request-groups", groups),
            ] {
                let got = one(name)?;
                if &got != want {
                    return Err(format!("{name}: {got:?}, expected {want:?}"));
                }
            }
            Ok(())
        }
        Expect::Anonymous => {
            if status != 200 {
                return Err(format!("{status}, expected 200"));
            }
            match a.headers.get("x-auth-request-user").map(|v| v.as_bytes()) {
                None | Some(b"") => Ok(()),
                Some(v) => Err(format!("anonymous allow with user {v:?}")),
            }
        }
        Expect::Login => {
            if status != 302 {
                return Err(format!("{status}, expected 302"));
            }
            let location = one("location")?;
            let ok = location.strip_prefix(&m.authorize).is_some_and(|q| {
                q.starts_with('?') && q.contains("state=") && q.contains("code_challenge=")
            });
            if !ok {
                return Err(format!("302 to {location:?}"));
            }
            let pending = a
                .headers
                .get_all("set-cookie")
                .iter()
                .any(|c| c.as_bytes().starts_with(b"_portcullis_csrf_"));
            if !pending {
                return Err("302 without a pending-login cookie".into());
            }
            Ok(())
        }
        Expect::Unauthorized => {
            if status != 401 || a.headers.contains_key("location") {
                return Err(format!("{status}, expected 401 without location"));
            }
            match a.headers.get("www-authenticate").map(|v| v.as_bytes()) {
                Some(b"Bearer") => Ok(()),
                other => Err(format!("401 with www-authenticate {other:?}")),
            }
        }
        Expect::InvalidToken => {
            if status != 401 || a.headers.contains_key("location") {
                return Err(format!("{status}, expected 401 without location"));
            }
            let challenge = one("www-authenticate")?;
            if !challenge.starts_with("Bearer error=\"invalid_token\"") {
                return Err(format!("401 with www-authenticate {challenge:?}"));
            }
            Ok(())
        }
        Expect::Status(want) => {
            if status != *want {
                return Err(format!("{status}, expected {want}"));
            }
            Ok(())
        }
    }
}

/// Log-scale latency histogram: 32 buckets per power of two above 64 µs.
const BUCKETS: usize = 64 + 32 * 28;

fn bucket(us: u64) -> usize {
    if us < 64 {
        return us as usize;
    }
    let b = 63 - us.leading_zeros() as usize; // ≥ 6
    (64 + (b - 6) * 32 + ((us >> (b - 5)) & 31) as usize).min(BUCKETS - 1)
}

fn bucket_floor(i: usize) -> u64 {
    if i < 64 {
        return i as u64;
    }
    let b = (i - 64) / 32 + 6;
    let sub = ((i - 64) % 32) as u64;
    (1u64 << b) + (sub << (b - 5))
}

#[derive(Clone)]
struct KindStats {
    requests: u64,
    statuses: BTreeMap<u16, u64>,
    wrong: u64,
    unexpected_allow: u64,
    five_xx: u64,
    latency: Vec<u64>,
}

impl Default for KindStats {
    fn default() -> Self {
        Self {
            requests: 0,
            statuses: BTreeMap::new(),
            wrong: 0,
            unexpected_allow: 0,
            five_xx: 0,
            latency: vec![0; BUCKETS],
        }
    }
}

impl KindStats {
    fn merge(&mut self, o: &KindStats) {
        self.requests += o.requests;
        for (s, n) in &o.statuses {
            *self.statuses.entry(*s).or_default() += n;
        }
        self.wrong += o.wrong;
        self.unexpected_allow += o.unexpected_allow;
        self.five_xx += o.five_xx;
        for (a, b) in self.latency.iter_mut().zip(&o.latency) {
            *a += b;
        }
    }

    fn percentile(&self, p: f64) -> String {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return "-".into();
        }
        let want = ((total as f64 * p).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= want {
                let us = bucket_floor(i);
                return if us < 1000 {
                    format!("{us} µs")
                } else {
                    format!("{:.2} ms", us as f64 / 1000.0)
                };
            }
        }
        "-".into()
    }
}

type Stats = BTreeMap<Kind, KindStats>;

/// Shared between the workers and the sampler.
struct Shared {
    material: Material,
    until: Instant,
    total: AtomicU64,
    reconnects: AtomicU64,
    wrong_log: Mutex<Vec<String>>,
    stop: AtomicBool,
    kinds: Vec<Kind>,
}

impl Shared {
    fn pick(&self, rng: &mut StdRng) -> Kind {
        self.kinds[rng.gen_range(0..self.kinds.len())]
    }

    fn record(
        &self,
        stats: &mut Stats,
        kind: Kind,
        took: Duration,
        result: Result<Answer, String>,
        expect: &Expect,
        adapter: &str,
    ) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let s = stats.entry(kind).or_default();
        s.requests += 1;
        s.latency[bucket(took.as_micros() as u64)] += 1;
        let problem = match result {
            Ok(a) => {
                *s.statuses.entry(a.status).or_default() += 1;
                if a.status >= 500 {
                    s.five_xx += 1;
                }
                if kind.must_deny() && (200..300).contains(&a.status) {
                    s.unexpected_allow += 1;
                }
                verdict(&self.material, expect, &a).err()
            }
            Err(e) => {
                *s.statuses.entry(0).or_default() += 1;
                Some(format!("transport: {e}"))
            }
        };
        if let Some(p) = problem {
            s.wrong += 1;
            if let Ok(mut log) = self.wrong_log.lock() {
                if log.len() < 30 {
                    log.push(format!("{adapter} {kind:?}: {p}"));
                }
            }
        }
    }
}

async fn http_worker(shared: Arc<Shared>, addr: SocketAddr, seed: u64) -> Stats {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stats = Stats::new();
    'connect: while Instant::now() < shared.until {
        let stream = match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) => {
                let kind = shared.pick(&mut rng);
                shared.record(
                    &mut stats,
                    kind,
                    Duration::ZERO,
                    Err(format!("connect: {e}")),
                    &Expect::Status(0),
                    "http",
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            continue;
        };
        tokio::spawn(conn);
        while Instant::now() < shared.until {
            if sender.ready().await.is_err() {
                shared.reconnects.fetch_add(1, Ordering::Relaxed);
                continue 'connect;
            }
            let kind = shared.pick(&mut rng);
            let case = shared.material.case(kind, &mut rng, false);
            let mut req = hyper::Request::get(case.path.as_str())
                .header("host", shared.material.host.as_str())
                .body(Empty::<Bytes>::new())
                .expect("request");
            for (k, v) in case.headers {
                req.headers_mut().append(k, v);
            }
            let t = Instant::now();
            let answer = async {
                let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
                let (parts, body) = resp.into_parts();
                body.collect().await.map_err(|e| e.to_string())?;
                Ok::<_, String>(Answer {
                    status: parts.status.as_u16(),
                    headers: parts.headers,
                })
            }
            .await;
            shared.record(
                &mut stats,
                case.kind,
                t.elapsed(),
                answer,
                &case.expect,
                "http",
            );
            if matches!(kind, Kind::OversizedCookie | Kind::NearLimitCookie) {
                // After a 431 hyper closes the connection.
                shared.reconnects.fetch_add(1, Ordering::Relaxed);
                continue 'connect;
            }
        }
    }
    stats
}

async fn grpc_worker(
    shared: Arc<Shared>,
    mut client: AuthorizationClient<tonic::transport::Channel>,
    seed: u64,
) -> Stats {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stats = Stats::new();
    while Instant::now() < shared.until {
        let kind = shared.pick(&mut rng);
        let case = shared.material.case(kind, &mut rng, true);
        let mut headers = std::collections::HashMap::new();
        for (k, v) in &case.headers {
            headers.insert(
                k.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            );
        }
        headers.insert("host".into(), shared.material.host.clone());
        let request = CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: "GET".into(),
                        host: shared.material.host.clone(),
                        path: case.path.clone(),
                        scheme: "http".into(),
                        protocol: "HTTP/1.1".into(),
                        headers,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        let t = Instant::now();
        let answer = client.check(request).await;
        let took = t.elapsed();
        let answer = answer
            .map_err(|e| format!("grpc status {:?}", e.code()))
            .and_then(|r| grpc_answer(r.into_inner().http_response));
        shared.record(&mut stats, case.kind, took, answer, &case.expect, "grpc");
    }
    stats
}

fn grpc_answer(r: Option<HttpResponse>) -> Result<Answer, String> {
    let mut headers = HeaderMap::new();
    let mut put = |opts: &[envoy_types::pb::envoy::config::core::v3::HeaderValueOption]| {
        for o in opts {
            if let Some(hv) = &o.header {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(hv.key.as_bytes()),
                    HeaderValue::from_str(&hv.value),
                ) {
                    headers.append(n, v);
                }
            }
        }
    };
    match r {
        Some(HttpResponse::OkResponse(ok)) => {
            put(&ok.headers);
            put(&ok.response_headers_to_add);
            Ok(Answer {
                status: 200,
                headers,
            })
        }
        Some(HttpResponse::DeniedResponse(d)) => {
            put(&d.headers);
            let status = d.status.map(|s| s.code).unwrap_or(0);
            Ok(Answer {
                status: u16::try_from(status).unwrap_or(0),
                headers,
            })
        }
        Some(other) => Err(format!("unexpected http_response {other:?}")),
        None => Err("CheckResponse without http_response".into()),
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn key(file: &str, kid: &str) -> anyhow::Result<SigningKey> {
    let path = format!("{}/tests/data/keys/{file}", env!("CARGO_MANIFEST_DIR"));
    Ok(SigningKey::from_pem(
        kid,
        Algorithm::RS256,
        &std::fs::read(&path).with_context(|| path.clone())?,
    )?)
}

fn now() -> i64 {
    Clock::system().now()
}

fn service_claims(issuer: &str, user: &str, exp: i64) -> Value {
    json!({
        "iss": issuer, "aud": AUDIENCE, "sub": user, "exp": exp, "iat": now(),
        "email": format!("{user}@svc.example.com"), "groups": ["readers", "writers"],
        "jti": portcullis::session::random_id(),
    })
}

/// Tokens that must all be refused with 401 invalid_token.
fn bad_tokens(issuer: &str, good: &SigningKey) -> anyhow::Result<Vec<String>> {
    let other = key("other_rsa.pem", &good.kid)?;
    let unknown_kid = key("rsa2.pem", "not-published")?;
    let valid = good.sign(&service_claims(issuer, "svc-bad", now() + 3600));
    let mut tampered: Vec<&str> = valid.split('.').collect();
    let evil_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&service_claims(
        issuer,
        "admin",
        now() + 3600,
    ))?);
    tampered[1] = &evil_payload;
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        evil_payload
    );
    let pem = std::fs::read(format!(
        "{}/tests/data/keys/rsa1.pub.pem",
        env!("CARGO_MANIFEST_DIR")
    ))?;
    let mut wrong_aud = service_claims(issuer, "svc-bad", now() + 3600);
    wrong_aud["aud"] = json!("another-api");
    let mut wrong_iss = service_claims(issuer, "svc-bad", now() + 3600);
    wrong_iss["iss"] = json!("http://127.0.0.1:9/elsewhere");
    Ok(vec![
        good.sign(&service_claims(issuer, "svc-bad", now() - 3600)), // expired beyond leeway
        other.sign(&service_claims(issuer, "admin", now() + 3600)),  // forged: other key, same kid
        sign_hs256(
            &good.kid,
            &pem,
            &service_claims(issuer, "admin", now() + 3600),
        ),
        alg_none,
        tampered.join("."),
        good.sign(&wrong_aud),
        good.sign(&wrong_iss),
        unknown_kid.sign(&service_claims(issuer, "admin", now() + 3600)),
        "not-a-jwt".into(),
        format!("{}.{}", &valid[..20], &valid[30..60]),
    ])
}

/// Walk a login through portcullis's HTTP listener as `user` in `groups`; the session cookie
/// header (`name=value`, chunks joined) and the first sealed value.
async fn login(base: &str, user: &str, groups: &str) -> anyhow::Result<(String, String)> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let start = client
        .get(format!("{base}/app/page"))
        .header("accept", HTML)
        .send()
        .await?;
    if start.status() != 302 {
        bail!("login start: {}", start.status());
    }
    let csrf = cookies(start.headers());
    let authorize = start.headers()["location"].to_str()?.to_string();
    let idp = client
        .get(format!("{authorize}&login_hint={user}&dev_groups={groups}"))
        .send()
        .await?;
    let callback = idp
        .headers()
        .get("location")
        .context("issuer did not redirect back")?
        .to_str()?
        .to_string();
    let done = client
        .get(&callback)
        .header("accept", HTML)
        .header(
            "cookie",
            csrf.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
        .send()
        .await?;
    if done.status() != 302 {
        bail!("callback: {}", done.status());
    }
    let session: Vec<_> = cookies(done.headers())
        .into_iter()
        .filter(|(k, v)| k.starts_with("_portcullis") && !k.contains("_csrf_") && !v.is_empty())
        .collect();
    let first = session.first().context("no session cookie")?.1.clone();
    let header = session
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    Ok((header, first))
}

fn cookies(headers: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|s| cookie::Cookie::parse(s.to_string()).ok())
        .map(|c| (c.name().to_string(), c.value().to_string()))
        .collect()
}

/// RSS (KiB) and open descriptors of a process.
fn rss_fds(pid: u32) -> (u64, u64) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    (rss, fds)
}

/// The child process, killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct KeyState {
    jwks: Value,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let threads: usize = env_or("THREADS", 2);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?
        .block_on(run(threads))
}

async fn run(threads: usize) -> anyhow::Result<()> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(600);
    let connections: usize = env_or("CONNECTIONS", 50);
    let grpc_streams: usize = env_or("GRPC_STREAMS", 10);
    let sample: u64 = env_or("SAMPLE", 10);
    let fresh_per_sec: u64 = env_or("FRESH_PER_SEC", 20);
    let log = std::env::var("LOG").unwrap_or_else(|_| "info".into());
    let bin = std::env::var("PORTCULLIS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/portcullis")
        });

    // The login issuer, in this process.
    let idp = dev_idp::start(
        "127.0.0.1:0".parse()?,
        DevClient {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
        },
        Clock::system(),
    )
    .await?;
    // The API tokens' issuer: a JWKS endpoint, in this process.
    let signing = key("rsa1.pem", "soak-rsa-1")?;
    let keys = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let keys_url = format!("http://{}", keys.local_addr()?);
    let key_state = Arc::new(KeyState {
        jwks: jwks(&[&signing]),
    });
    let router = axum::Router::new()
        .route(
            "/jwks",
            axum::routing::get(
                |axum::extract::State(s): axum::extract::State<Arc<KeyState>>| async move {
                    axum::Json(s.jwks.clone())
                },
            ),
        )
        .with_state(key_state);
    tokio::spawn(async move { axum::serve(keys, router).await });

    let (http_port, grpc_port, admin_port) = (free_port()?, free_port()?, free_port()?);
    let work = std::env::temp_dir().join(format!("portcullis-soak-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let config = work.join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
http_address = "127.0.0.1:{http_port}"
grpc_address = "127.0.0.1:{grpc_port}"
admin_address = "127.0.0.1:{admin_port}"
max_header_bytes = {MAX_HEAD}

[oidc]
issuer_url = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
scopes = ["openid", "email", "profile", "groups"]

[cookie]
secret = "{secret}"
secure = false

[log]
level = "{log}"

[bearer]
enabled = true
cache_size = 2000

[[bearer.issuers]]
issuer = "{keys_url}"
jwks_uri = "{keys_url}/jwks"
audiences = ["{AUDIENCE}"]

[[authz.rules]]
paths = ["/public/*"]
action = "public"

[[authz.rules]]
paths = ["/internal/*"]
action = "deny"

[[authz.rules]]
paths = ["/admin/*"]
action = "require"
groups = ["admins"]

[[authz.rules]]
paths = ["/api/*"]
action = "authenticated"
api = true
"#,
            issuer = idp.issuer,
            secret = STANDARD.encode(rand::random::<[u8; 32]>()),
        ),
    )?;
    let log_path = work.join("portcullis.log");
    let log_file = std::fs::File::create(&log_path)?;
    let child = Child(
        std::process::Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?,
    );
    let pid = child.0.id();
    let base = format!("http://127.0.0.1:{http_port}");
    let probe = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..300 {
        if let Ok(r) = probe
            .get(format!("http://127.0.0.1:{admin_port}/readyz"))
            .send()
            .await
        {
            if r.status().is_success() {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !ready {
        bail!(
            "portcullis not ready; its log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    let (alice_cookie, alice_sealed) = login(&base, "alice", "staff").await?;
    let (carol_cookie, _) = login(&base, "carol", "admins").await?;
    let cached = (0..16)
        .map(|i| {
            let user = format!("svc-cached-{i}");
            (
                signing.sign(&service_claims(&keys_url, &user, now() + 7200)),
                user,
            )
        })
        .collect();
    let material = Material {
        host: format!("127.0.0.1:{http_port}"),
        authorize: format!("{}/authorize", idp.issuer),
        alice_cookie,
        alice_sealed,
        carol_cookie,
        cached,
        bad: bad_tokens(&keys_url, &signing)?,
        fresh: Mutex::new(Vec::new()),
    };
    let kinds = Kind::ALL
        .iter()
        .flat_map(|k| std::iter::repeat_n(*k, k.weight() as usize))
        .collect();
    let until = Instant::now() + Duration::from_secs(seconds);
    let shared = Arc::new(Shared {
        material,
        until,
        total: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
        wrong_log: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        kinds,
    });

    // Fresh tokens, signed on a thread of their own so that signing never stalls the workers.
    let signer = {
        let shared = shared.clone();
        let issuer = keys_url.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            let every = Duration::from_micros(1_000_000 / fresh_per_sec.max(1));
            while !shared.stop.load(Ordering::Relaxed) {
                if fresh_per_sec > 0 {
                    let user = format!("svc-fresh-{n}");
                    n += 1;
                    let token = signing.sign(&service_claims(&issuer, &user, now() + 3600));
                    if let Ok(mut f) = shared.material.fresh.lock() {
                        if f.len() < 1000 {
                            f.push((token, user));
                        }
                    }
                }
                std::thread::sleep(every);
            }
            n
        })
    };

    let (rss0, fds0) = rss_fds(pid);
    eprintln!(
        "soak: {seconds} s, {connections} HTTP connections + {grpc_streams} gRPC streams, \
         portcullis pid {pid} (RSS {rss0} KiB, {fds0} fds), sampling every {sample} s"
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..connections {
        let addr: SocketAddr = format!("127.0.0.1:{http_port}").parse()?;
        tasks.push(tokio::spawn(http_worker(shared.clone(), addr, i as u64)));
    }
    if grpc_streams > 0 {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc_port}"))?
                .connect()
                .await?;
        for i in 0..grpc_streams {
            let client = AuthorizationClient::new(channel.clone());
            tasks.push(tokio::spawn(grpc_worker(
                shared.clone(),
                client,
                10_000 + i as u64,
            )));
        }
    }

    // (t s, RSS KiB, fds, requests so far, portcullis CPU ticks)
    let mut samples = vec![(0u64, rss0, fds0, 0u64)];
    let mut next = sample;
    loop {
        let at = started + Duration::from_secs(next.min(seconds));
        tokio::time::sleep_until(at.into()).await;
        let (rss, fds) = rss_fds(pid);
        let total = shared.total.load(Ordering::Relaxed);
        samples.push((next.min(seconds), rss, fds, total));
        eprintln!(
            "t={:>4}s RSS {rss} KiB fds {fds} requests {total}",
            next.min(seconds)
        );
        if next >= seconds {
            break;
        }
        next += sample;
    }
    let mut stats = Stats::new();
    let mut grpc_stats = Stats::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let s = t.await?;
        let into = if i < connections {
            &mut stats
        } else {
            &mut grpc_stats
        };
        for (k, v) in s {
            into.entry(k).or_default().merge(&v);
        }
    }
    let took = started.elapsed().as_secs_f64();
    shared.stop.store(true, Ordering::Relaxed);
    let signed = signer.join().unwrap_or(0);
    let (rss_end, fds_end) = rss_fds(pid);
    let alive = std::fs::metadata(format!("/proc/{pid}")).is_ok();
    drop(child);
    let log_bytes = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);

    // Report.
    let all = |s: &Stats| {
        s.values().fold(KindStats::default(), |mut a, b| {
            a.merge(b);
            a
        })
    };
    let (http_all, grpc_all) = (all(&stats), all(&grpc_stats));
    let total = http_all.requests + grpc_all.requests;
    println!(
        "Soak: {seconds} s, {connections} HTTP/1.1 keep-alive connections + {grpc_streams} gRPC \
         Check streams on one HTTP/2 connection, generator on {threads} threads; \
         {total} requests, {:.0} req/s ({} HTTP, {} gRPC); {} reconnects (431 closes); \
         {signed} fresh bearer tokens signed; portcullis log {:.1} MB at log.level={log}.",
        total as f64 / took,
        http_all.requests,
        grpc_all.requests,
        shared.reconnects.load(Ordering::Relaxed),
        log_bytes as f64 / 1e6,
    );
    println!();
    for (name, s) in [("HTTP", &stats), ("gRPC", &grpc_stats)] {
        if s.is_empty() {
            continue;
        }
        println!("| {name}: kind → expected | requests | statuses | wrong | unexpected allows | 5xx | p50 | p99 |");
        println!("|---|---:|---|---:|---:|---:|---:|---:|");
        for (k, v) in s {
            let statuses = v
                .statuses
                .iter()
                .map(|(s, n)| {
                    if *s == 0 {
                        format!("error {n}")
                    } else {
                        format!("{s}: {n}")
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            println!(
                "| {} | {} | {statuses} | {} | {} | {} | {} | {} |",
                k.label(),
                v.requests,
                v.wrong,
                v.unexpected_allow,
                v.five_xx,
                v.percentile(0.5),
                v.percentile(0.99)
            );
        }
        let a = all(s);
        println!(
            "| **all {name}** | **{}** | | **{}** | **{}** | **{}** | {} | {} |",
            a.requests,
            a.wrong,
            a.unexpected_allow,
            a.five_xx,
            a.percentile(0.5),
            a.percentile(0.99)
        );
        println!();
    }

    // Memory and descriptors.
    let base_t = 120.min(seconds / 5);
    let base = samples
        .iter()
        .find(|s| s.0 >= base_t)
        .copied()
        .unwrap_or(samples[0]);
    let after: Vec<_> = samples.iter().filter(|s| s.0 >= base.0).collect();
    let rss_max_after = after.iter().map(|s| s.1).max().unwrap_or(base.1);
    let fds_max_before = samples
        .iter()
        .filter(|s| s.0 > 0 && s.0 <= base.0)
        .map(|s| s.2)
        .max()
        .unwrap_or(base.2);
    let fds_max_after = after.iter().map(|s| s.2).max().unwrap_or(base.2);
    let rss_flat = rss_max_after <= base.1 + RSS_SLACK_KIB;
    let fds_flat = fds_max_after <= fds_max_before + FD_SLACK;
    let mib = |k: u64| format!("{:.1}", k as f64 / 1024.0);
    let rss: Vec<u64> = samples.iter().map(|s| s.1).collect();
    let fds: Vec<u64> = samples.iter().map(|s| s.2).collect();
    println!(
        "| | first (t=0) | min | max | last | at t={} s (baseline) | max after baseline |",
        base.0
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "| RSS (MiB) | {} | {} | {} | {} | {} | {} |",
        mib(rss[0]),
        mib(*rss.iter().min().unwrap_or(&0)),
        mib(*rss.iter().max().unwrap_or(&0)),
        mib(*rss.last().unwrap_or(&0)),
        mib(base.1),
        mib(rss_max_after)
    );
    println!(
        "| open fds | {} | {} | {} | {} | {} | {} |",
        fds[0],
        fds.iter().min().unwrap_or(&0),
        fds.iter().max().unwrap_or(&0),
        fds.last().unwrap_or(&0),
        base.2,
        fds_max_after
    );
    println!();
    // The series, one row a minute (or every sample in a short run).
    let every = if seconds >= 300 { 60 } else { sample };
    println!("| t (s) | RSS (MiB) | open fds | requests so far |");
    println!("|---:|---:|---:|---:|");
    for s in samples
        .iter()
        .filter(|s| s.0 % every == 0 || s.0 == seconds)
    {
        println!("| {} | {} | {} | {} |", s.0, mib(s.1), s.2, s.3);
    }
    println!();
    println!(
        "memory: {} (criterion: RSS after t={} s ≤ baseline + {} MiB: max {} vs {}); \
         fds: {} (after the baseline ≤ highest before it + {FD_SLACK}: {fds_max_after} vs {fds_max_before}); \
         at the end: RSS {} MiB, {fds_end} fds, portcullis {}",
        if rss_flat { "flat" } else { "GROWING" },
        base.0,
        RSS_SLACK_KIB / 1024,
        mib(rss_max_after),
        mib(base.1),
        if fds_flat { "flat" } else { "GROWING" },
        mib(rss_end),
        if alive { "still running" } else { "HAD EXITED" },
    );
    let wrong = http_all.wrong + grpc_all.wrong;
    let five_xx = http_all.five_xx + grpc_all.five_xx;
    let allows = http_all.unexpected_allow + grpc_all.unexpected_allow;
    println!("wrong answers: {wrong}; unexpected allows: {allows}; 5xx: {five_xx}");
    if let Ok(log) = shared.wrong_log.lock() {
        for w in log.iter() {
            println!("  wrong: {w}");
        }
    }
    let judged = seconds >= 120;
    if !judged {
        println!("(shorter than 120 s: memory reported, not judged)");
    }
    let ok =
        wrong == 0 && five_xx == 0 && allows == 0 && alive && (!judged || (rss_flat && fds_flat));
    if ok {
        let _ = std::fs::remove_dir_all(&work);
        println!("PASS");
        Ok(())
    } else {
        println!(
            "FAIL (portcullis's config and log kept in {})",
            work.display()
        );
        std::process::exit(1)
    }
}
