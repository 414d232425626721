//! The signing keys, issuer and claims that the bearer benchmarks share (`bench/verify.rs`,
//! `bench/micro.rs`, `bench/kit.rs`): the test keys of tests/data/keys, published as one
//! JWKS, and an issuer that trusts them. Included with `#[path]`, not a crate of its own.

#![allow(dead_code)]

use jsonwebtoken::Algorithm;
use portcullis::config::BearerIssuer;
use portcullis::token::bearer::KeySet;
use portcullis::token::testkit::{jwks, SigningKey};
use serde_json::{json, Value};

pub const ISS: &str = "https://idp.example.com";
pub const AUD: &str = "api";

pub fn key(file: &str, kid: &str, alg: Algorithm) -> SigningKey {
    let path = format!("{}/tests/data/keys/{file}", env!("CARGO_MANIFEST_DIR"));
    let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    SigningKey::from_pem(kid, alg, &pem).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// RS256 (2048-bit), ES256, ES384 and EdDSA (Ed25519), in that order.
pub fn keys() -> Vec<SigningKey> {
    vec![
        key("rsa1.pem", "rsa", Algorithm::RS256),
        key("ec256.pem", "ec256", Algorithm::ES256),
        key("ec384.pem", "ec384", Algorithm::ES384),
        key("ed25519.pem", "ed", Algorithm::EdDSA),
    ]
}

/// The public JWKS of `keys`.
pub fn jwks_of(keys: &[SigningKey]) -> Value {
    jwks(&keys.iter().collect::<Vec<_>>())
}

pub fn key_set(keys: &[SigningKey]) -> KeySet {
    KeySet::from_jwks(&jwks_of(keys)).unwrap_or_else(|e| panic!("JWKS: {e}"))
}

/// An issuer named `iss` for audience [`AUD`] with the default claim names.
pub fn issuer(iss: &str) -> BearerIssuer {
    BearerIssuer {
        issuer: iss.into(),
        jwks_uri: None,
        audiences: vec![AUD.into()],
        algorithms: vec![],
        user_claim: "sub".into(),
        email_claim: "email".into(),
        groups_claim: "groups".into(),
    }
}

/// A service token's claims, issued at `now`, valid for an hour.
pub fn claims(iss: &str, sub: &str, now: i64) -> Value {
    json!({
        "iss": iss, "aud": AUD, "sub": sub, "exp": now + 3600, "iat": now,
        "email": "svc@example.com", "groups": ["a", "b", "c"],
    })
}
