//! Micro benchmark of bearer verification: the cost of an uncached verification (per key type)
//! and of a cached one (shape check + SHA-256 of the token + cache lookup: what
//! `token::Bearers::verify` does for a token it has seen). Self-timed loop, no assertions.
//!
//!     cargo run --release --example bearer_verify
//!
//! Results and the machine they came from: bench/README.md.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use portcullis::config::BearerIssuer;
use portcullis::token::bearer::{self, KeySet};
use portcullis::token::cache::VerifiedCache;
use portcullis::token::testkit::{jwks, SigningKey};
use serde_json::json;

const ISS: &str = "https://idp.example.com";

fn key(file: &str, kid: &str, alg: Algorithm) -> SigningKey {
    let path = format!("{}/tests/data/keys/{file}", env!("CARGO_MANIFEST_DIR"));
    SigningKey::from_pem(kid, alg, &std::fs::read(path).unwrap()).unwrap()
}

/// Run `f` for about `budget`, return the mean time per call.
fn measure(budget: Duration, mut f: impl FnMut()) -> Duration {
    for _ in 0..50 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < budget {
        for _ in 0..50 {
            f();
        }
        n += 50;
    }
    start.elapsed() / n
}

fn main() {
    let keys = [
        key("rsa1.pem", "rsa", Algorithm::RS256),
        key("ec256.pem", "ec256", Algorithm::ES256),
        key("ec384.pem", "ec384", Algorithm::ES384),
        key("ed25519.pem", "ed", Algorithm::EdDSA),
    ];
    let set = KeySet::from_jwks(&jwks(&keys.iter().collect::<Vec<_>>())).unwrap();
    let issuer = BearerIssuer {
        issuer: ISS.into(),
        jwks_uri: None,
        audiences: vec!["api".into()],
        algorithms: vec![],
        user_claim: "sub".into(),
        email_claim: "email".into(),
        groups_claim: "groups".into(),
    };
    let now = 1_800_000_000;
    let claims = json!({
        "iss": ISS, "aud": "api", "sub": "svc", "exp": now + 3600, "iat": now,
        "email": "svc@example.com", "groups": ["a", "b", "c"],
    });
    let budget = Duration::from_secs(2);
    println!("{:<28} {:>12}", "operation", "per call");
    for k in &keys {
        let token = k.sign(&claims);
        let t = measure(budget, || {
            let iss = bearer::unverified_issuer(black_box(&token)).unwrap();
            assert_eq!(iss, ISS);
            black_box(bearer::verify(&token, &issuer, &set, now, 30).unwrap());
        });
        println!(
            "{:<28} {:>9.1} µs",
            format!("uncached {:?}", k.alg),
            t.as_nanos() as f64 / 1000.0
        );
    }
    let token = keys[0].sign(&claims);
    let cache = VerifiedCache::new(10_000);
    let v = Arc::new(bearer::verify(&token, &issuer, &set, now, 30).unwrap());
    cache.insert(&token, v, now);
    let t = measure(budget, || {
        assert_eq!(bearer::shape(black_box(&token)), bearer::Shape::Jws);
        black_box(cache.get(&token, now).unwrap());
    });
    println!(
        "{:<28} {:>9.1} µs",
        "cached (RS256 token)",
        t.as_nanos() as f64 / 1000.0
    );
}
