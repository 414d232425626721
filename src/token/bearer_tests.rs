//! Table tests of the pure verifier: every attack of issue 4 is refused, every key type passes.

#![allow(clippy::unwrap_used)]

use base64::Engine;
use jsonwebtoken::{Algorithm, Header};
use serde_json::{json, Value};

use super::*;
use crate::token::testkit::{jwks, sign_hs256, SigningKey};

const ISS: &str = "https://idp.example.com";
const NOW: i64 = 1_800_000_000;
const LEEWAY: i64 = 30;

const RSA1: &str = include_str!("../../tests/data/keys/rsa1.pem");
const RSA1_PUB: &str = include_str!("../../tests/data/keys/rsa1.pub.pem");
const EC256: &str = include_str!("../../tests/data/keys/ec256.pem");
const EC384: &str = include_str!("../../tests/data/keys/ec384.pem");
const ED25519: &str = include_str!("../../tests/data/keys/ed25519.pem");
const OTHER: &str = include_str!("../../tests/data/keys/other_rsa.pem");

struct Fixture {
    rsa: SigningKey,
    ec256: SigningKey,
    ec384: SigningKey,
    ed: SigningKey,
    other: SigningKey,
    keys: KeySet,
    issuer: BearerIssuer,
}

fn fixture() -> Fixture {
    let rsa = SigningKey::from_pem("rsa1", Algorithm::RS256, RSA1.as_bytes()).unwrap();
    let ec256 = SigningKey::from_pem("ec256", Algorithm::ES256, EC256.as_bytes()).unwrap();
    let ec384 = SigningKey::from_pem("ec384", Algorithm::ES384, EC384.as_bytes()).unwrap();
    let ed = SigningKey::from_pem("ed", Algorithm::EdDSA, ED25519.as_bytes()).unwrap();
    let other = SigningKey::from_pem("rsa1", Algorithm::RS256, OTHER.as_bytes()).unwrap();
    let mut doc = jwks(&[&rsa, &ec256, &ec384, &ed]);
    // A symmetric key in the set must never be used (alg confusion).
    doc["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}));
    let keys = KeySet::from_jwks(&doc).unwrap();
    assert_eq!(keys.len(), 4, "the oct key is dropped");
    Fixture {
        rsa,
        ec256,
        ec384,
        ed,
        other,
        keys,
        issuer: BearerIssuer {
            issuer: ISS.into(),
            jwks_uri: None,
            audiences: vec!["api".into(), "other-api".into()],
            algorithms: Vec::new(),
            user_claim: "sub".into(),
            email_claim: "email".into(),
            groups_claim: "roles".into(),
        },
    }
}

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": "api", "sub": "svc-1", "exp": NOW + 600, "iat": NOW,
        "email": "svc@example.com", "roles": ["readers", "writers"],
    })
}

fn with(mut v: Value, key: &str, val: Value) -> Value {
    v[key] = val;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn check(f: &Fixture, token: &str) -> Result<VerifiedToken, BearerError> {
    verify(token, &f.issuer, &f.keys, NOW, LEEWAY)
}

#[test]
fn every_key_type_verifies_and_claims_map() {
    let f = fixture();
    for key in [&f.rsa, &f.ec256, &f.ec384, &f.ed] {
        let v = check(&f, &key.sign(&claims())).unwrap_or_else(|e| panic!("{}: {e}", key.kid));
        assert_eq!(v.user, "svc-1");
        assert_eq!(v.email, "svc@example.com");
        assert_eq!(
            v.groups,
            vec!["readers", "writers"],
            "the issuer's groups claim"
        );
        assert_eq!(v.expires_at, NOW + 600);
    }
    let mut ps = f.rsa.header();
    ps.alg = Algorithm::PS256;
    assert_eq!(
        check(&f, &f.rsa.sign_with(&ps, &claims())).map(|_| ()),
        Err(BearerError::Algorithm),
        "the JWK's alg (RS256) pins the algorithm"
    );
    let arr = with(claims(), "aud", json!(["x", "other-api"]));
    assert!(check(&f, &f.rsa.sign(&arr)).is_ok(), "aud array with ours");
    let in_leeway = with(claims(), "exp", json!(NOW - 10));
    assert!(check(&f, &f.rsa.sign(&in_leeway)).is_ok(), "within leeway");
    let no_kid = Header::new(Algorithm::ES256);
    assert!(check(&f, &f.ec256.sign_with(&no_kid, &claims())).is_ok());
    let unverified = with(claims(), "email_verified", json!(false));
    assert_eq!(check(&f, &f.rsa.sign(&unverified)).unwrap().email, "");
}

#[test]
fn attack_table_is_refused() {
    use BearerError as E;
    let f = fixture();
    let good = f.rsa.sign(&claims());
    let [h, p, s]: [&str; 3] = good.split('.').collect::<Vec<_>>().try_into().unwrap();
    let none_header = json!({"alg": "none", "typ": "JWT"});
    let kid_token = |kid: &str| {
        let mut hd = f.rsa.header();
        hd.kid = Some(kid.into());
        f.rsa.sign_with(&hd, &claims())
    };
    let mut crit = f.rsa.header();
    crit.crit = Some(vec!["exp".into()]);
    crit.extras.insert("exp", "1");
    let mut flipped = s.as_bytes().to_vec();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let mut wrong_type = f.ec256.header();
    wrong_type.kid = Some("rsa1".into());
    let restricted = BearerIssuer {
        algorithms: vec!["ES256".into()],
        ..f.issuer.clone()
    };
    let cases: Vec<(&str, String, E)> = vec![
        (
            "alg none, empty signature",
            format!("{}.{}.", b64(&none_header), b64(&claims())),
            E::Malformed,
        ),
        (
            "alg none, some signature",
            format!("{}.{}.{s}", b64(&none_header), b64(&claims())),
            E::Malformed,
        ),
        (
            "alg None spelled otherwise",
            format!("{}.{p}.{s}", b64(&json!({"alg": "None"}))),
            E::Malformed,
        ),
        (
            "HS256 keyed with the RSA public key",
            sign_hs256("rsa1", RSA1_PUB.as_bytes(), &claims()),
            E::Algorithm,
        ),
        (
            "HS256 keyed with the set's oct key",
            sign_hs256("hmac", b"secret", &claims()),
            E::UnknownKey,
        ),
        (
            "kid path traversal",
            kid_token("../../../../etc/passwd"),
            E::UnknownKey,
        ),
        ("kid SQL", kid_token("' OR '1'='1' --"), E::UnknownKey),
        (
            "kid URL",
            kid_token("https://evil.example/jwks.json"),
            E::UnknownKey,
        ),
        (
            "expired beyond leeway",
            f.rsa.sign(&with(claims(), "exp", json!(NOW - 31))),
            E::Expired,
        ),
        (
            "nbf in the future",
            f.rsa.sign(&with(claims(), "nbf", json!(NOW + 120))),
            E::NotYetValid,
        ),
        (
            "wrong iss",
            f.rsa
                .sign(&with(claims(), "iss", json!("https://evil.example"))),
            E::UntrustedIssuer,
        ),
        (
            "iss with a trailing slash",
            f.rsa.sign(&with(claims(), "iss", json!(format!("{ISS}/")))),
            E::UntrustedIssuer,
        ),
        (
            "wrong aud",
            f.rsa.sign(&with(claims(), "aud", json!("someone-else"))),
            E::Audience,
        ),
        (
            "aud array without ours",
            f.rsa.sign(&with(claims(), "aud", json!(["a", "b"]))),
            E::Audience,
        ),
        (
            "missing aud",
            f.rsa.sign(&without(claims(), "aud")),
            E::MissingClaim,
        ),
        (
            "missing exp",
            f.rsa.sign(&without(claims(), "exp")),
            E::MissingClaim,
        ),
        (
            "exp not a number",
            f.rsa.sign(&with(claims(), "exp", json!("tomorrow"))),
            E::MissingClaim,
        ),
        (
            "missing sub",
            f.rsa.sign(&without(claims(), "sub")),
            E::NoSubject,
        ),
        (
            "JWE-shaped, five parts",
            format!("{h}.{p}.{s}.{s}.{s}"),
            E::Malformed,
        ),
        (
            "crit header",
            f.rsa.sign_with(&crit, &claims()),
            E::UnsupportedHeader,
        ),
        (
            "second issuer's key under our kid",
            f.other.sign(&claims()),
            E::Signature,
        ),
        (
            "bad base64",
            format!("{h}.{}!.{s}", &p[..p.len() - 1]),
            E::Malformed,
        ),
        ("padded base64", format!("{h}.{p}=.{s}"), E::Malformed),
        (
            "payload not JSON",
            format!(
                "{h}.{}.{s}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("nope")
            ),
            E::Signature,
        ),
        (
            "100 KB token",
            format!("{h}.{}.{s}", "A".repeat(100 * 1024)),
            E::TooLarge,
        ),
        (
            "signature bit flip",
            format!("{h}.{p}.{}", String::from_utf8(flipped).unwrap()),
            E::Signature,
        ),
        (
            "payload swapped under a valid signature",
            format!("{h}.{}.{s}", b64(&with(claims(), "sub", json!("admin")))),
            E::Signature,
        ),
        (
            "ES256 header on the RSA key",
            f.ec256.sign_with(&wrong_type, &claims()),
            E::Algorithm,
        ),
        ("empty", String::new(), E::Malformed),
    ];
    for (name, token, want) in &cases {
        assert_eq!(check(&f, token).map(|_| ()), Err(*want), "{name}");
    }
    assert_eq!(
        verify(&good, &restricted, &f.keys, NOW, LEEWAY).map(|_| ()),
        Err(E::Algorithm),
        "an algorithm outside the issuer's list"
    );
}

#[test]
fn shapes() {
    assert_eq!(shape("opaque-token_123"), Shape::Opaque);
    assert_eq!(shape("a.b.c"), Shape::Jws);
    assert_eq!(shape("a.b"), Shape::Bad(BearerError::Malformed));
    assert_eq!(shape("a..c"), Shape::Bad(BearerError::Malformed));
    assert_eq!(
        shape(&"a".repeat(MAX_TOKEN_BYTES + 1)),
        Shape::Bad(BearerError::TooLarge)
    );
}

#[test]
fn key_sets_skip_what_cannot_verify() {
    let doc = json!({"keys": [
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"},
        {"kty": "weird"},
        "not an object",
    ]});
    assert!(KeySet::from_jwks(&doc).unwrap().is_empty());
    assert!(KeySet::from_jwks(&json!({"nokeys": []})).is_err());
}

#[test]
fn error_texts_are_header_safe() {
    use BearerError as E;
    for e in [
        E::TooLarge,
        E::Malformed,
        E::UnsupportedHeader,
        E::Algorithm,
        E::UntrustedIssuer,
        E::UnknownKey,
        E::Signature,
        E::Audience,
        E::MissingClaim,
        E::Expired,
        E::NotYetValid,
        E::NoSubject,
    ] {
        assert!(
            e.as_str()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == ' '),
            "{e}"
        );
    }
}
