//! Micro benchmark of bearer verification: the cost of an uncached verification (per key type)
//! and of a cached one (shape check + SHA-256 of the token + cache lookup: what
//! `token::Bearers::verify` does for a token it has seen). Self-timed loop, no assertions.
//!
//!     cargo run --release --example bearer_verify                  (ring verifiers, as served)
//!     cargo run --release --example bearer_verify -- --rust-crypto (jsonwebtoken's RustCrypto)
//!
//! `--rust-crypto` installs jsonwebtoken's own `rust_crypto` provider before portcullis can
//! install its ring-backed one (`token::crypto`): the before/after of that change in one build.
//! Results and the machine they came from: bench/README.md.

#![allow(clippy::unwrap_used)]

#[path = "bearer_setup.rs"]
mod bearer_setup;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bearer_setup::{claims, issuer, key_set, keys, ISS};
use portcullis::token::bearer;
use portcullis::token::cache::VerifiedCache;

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
    let provider = if std::env::args().any(|a| a == "--rust-crypto") {
        jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER
            .install_default()
            .unwrap();
        assert!(!portcullis::token::crypto::install());
        "RustCrypto"
    } else {
        assert!(portcullis::token::crypto::install());
        "ring"
    };
    let keys = keys();
    let set = key_set(&keys);
    let issuer = issuer(ISS);
    let now = 1_800_000_000;
    let claims = claims(ISS, "svc", now);
    let budget = Duration::from_secs(2);
    println!("{:<40} {:>12}", "operation", "per call");
    for k in &keys {
        let token = k.sign(&claims);
        let t = measure(budget, || {
            let iss = bearer::unverified_issuer(black_box(&token)).unwrap();
            assert_eq!(iss, ISS);
            black_box(bearer::verify(&token, &issuer, &set, now, 30).unwrap());
        });
        println!(
            "{:<40} {:>9.1} µs",
            format!("uncached {:?} ({provider})", k.alg),
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
        "{:<40} {:>9.1} µs",
        "cached (RS256 token)",
        t.as_nanos() as f64 / 1000.0
    );
}
