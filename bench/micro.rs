//! Criterion micro-benchmarks of the pure pieces of a check: the session cookie codec (seal and
//! open at 1, 4 and 13 KiB of payload — 13 KiB is about the most that fits in the 5 cookies a
//! session may use), the session cache hit that replaces `open` on repeated requests,
//! `decide`, return-URL validation, and bearer verification (cold RS256 / ES256, cached).
//!
//!     cargo bench --bench micro              (all)
//!     cargo bench --bench micro -- codec     (a group)
//!
//! Not run by scripts/test; `cargo clippy --all-targets` builds it.

#![allow(clippy::unwrap_used)]

#[path = "bearer_setup.rs"]
mod bearer_setup;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::{HeaderMap, HeaderValue, Method};
use portcullis::authz::decide::{decide, BearerFact};
use portcullis::authz::input::CheckInput;
use portcullis::authz::policy::Policy;
use portcullis::config::AuthzConfig;
use portcullis::session::cache::SessionCache;
use portcullis::session::cookie::{CookieCodec, CookieKey};
use portcullis::session::Session;
use portcullis::token::bearer;
use portcullis::token::cache::VerifiedCache;

const NOW: i64 = 1_800_000_000;
use bearer_setup::ISS;

fn session(id_token_len: usize) -> Session {
    Session {
        id: "0123456789abcdefghijkl".into(),
        user: "alice".into(),
        email: "alice@example.com".into(),
        preferred_username: "alice".into(),
        groups: vec!["admins".into(), "devs".into()],
        id_token: Some("e".repeat(id_token_len)),
        access_token: None,
        created_at: NOW - 60,
        expires_at: NOW + 3600,
        claims: Default::default(),
        ..Session::anonymous()
    }
}

fn codec(c: &mut Criterion) {
    let codec = CookieCodec::new(&CookieKey::generate(), &[]);
    let mut g = c.benchmark_group("codec");
    for kib in [1usize, 4, 13] {
        let s = session(kib * 1024 - 200);
        let sealed = codec.seal("_portcullis", &s).unwrap();
        g.throughput(Throughput::Bytes((kib * 1024) as u64));
        g.bench_with_input(BenchmarkId::new("seal", format!("{kib}KiB")), &s, |b, s| {
            b.iter(|| codec.seal("_portcullis", black_box(s)).unwrap())
        });
        g.bench_with_input(
            BenchmarkId::new("open", format!("{kib}KiB")),
            &sealed,
            |b, v| b.iter(|| codec.open::<Session>("_portcullis", black_box(v)).unwrap()),
        );
        if sealed.len() > portcullis::session::cache::MAX_VALUE_LEN {
            continue; // not cached: every request opens it
        }
        let cache = SessionCache::default();
        cache.insert(&sealed, &std::sync::Arc::new(s.clone()), NOW);
        g.bench_with_input(
            BenchmarkId::new("cache_hit", format!("{kib}KiB")),
            &sealed,
            |b, v| b.iter(|| cache.get(black_box(v), NOW).unwrap()),
        );
    }
    g.finish();
}

fn decision(c: &mut Criterion) {
    let policy = Policy::new(&AuthzConfig {
        email_domains: vec!["example.com".into()],
        allowed_groups: vec!["devs".into()],
        redirect_domains: vec![],
        rules: vec![],
    });
    let mut h = HeaderMap::new();
    h.insert("accept", HeaderValue::from_static("application/json"));
    let input = CheckInput::new(
        Method::GET,
        "app.example.com",
        "/app/items/42?x=1",
        h,
        "r".into(),
    );
    let s = session(800);
    let mut g = c.benchmark_group("decide");
    g.bench_function("valid_session", |b| {
        b.iter(|| {
            decide(
                black_box(&input),
                Some(&s),
                &BearerFact::Absent,
                &policy,
                NOW,
            )
        })
    });
    g.bench_function("no_session", |b| {
        b.iter(|| decide(black_box(&input), None, &BearerFact::Absent, &policy, NOW))
    });
    g.finish();
}

fn redirect(c: &mut Criterion) {
    let mut g = c.benchmark_group("redirect");
    for (name, url) in [
        ("relative", "/app/items/42?x=1&y=%20z"),
        ("absolute_refused", "https://evil.example.net/app"),
        ("protocol_relative", "//evil.example.net/app"),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| portcullis::redirect::validate(black_box(url), &[]))
        });
    }
    g.finish();
}

fn bearer_verify(c: &mut Criterion) {
    let keys: Vec<_> = bearer_setup::keys().into_iter().take(2).collect(); // RS256, ES256
    let set = bearer_setup::key_set(&keys);
    let issuer = bearer_setup::issuer(ISS);
    let claims = bearer_setup::claims(ISS, "svc", NOW);
    let mut g = c.benchmark_group("bearer");
    for k in &keys {
        let token = k.sign(&claims);
        g.bench_function(format!("uncached_{:?}", k.alg), |b| {
            b.iter(|| bearer::verify(black_box(&token), &issuer, &set, NOW, 30).unwrap())
        });
    }
    let token = keys[0].sign(&claims);
    let cache = VerifiedCache::new(10_000);
    let v = Arc::new(bearer::verify(&token, &issuer, &set, NOW, 30).unwrap());
    cache.insert(&token, v, NOW);
    g.bench_function("cached", |b| {
        b.iter(|| {
            assert_eq!(bearer::shape(black_box(&token)), bearer::Shape::Jws);
            cache.get(&token, NOW).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, codec, decision, redirect, bearer_verify);
criterion_main!(benches);
