//! Bearer token parsing and verification (`token::bearer`): shape, the unverified peek at
//! `iss` and `kid`, and `verify` against a JWKS with RSA, EC and Ed25519 keys (and a symmetric
//! key that must never be used).
//!
//! Invariants:
//! * a token made up without a private key never verifies (raw input, HS256 keyed with the
//!   JWKS's own `oct` secret, `alg: none`, any header);
//! * a signed token verifies only if `iss` is the issuer, `aud` names an audience, `exp`
//!   (with leeway) is in the future, `nbf` (with leeway) is not, the user claim is non-empty,
//!   no `crit` header, and the `kid` names a key of the token's `alg`; a plain valid token
//!   verifies, naming its `sub`;
//! * any change to a signed token's bytes makes it fail.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use jsonwebtoken::{Algorithm, Header};
use libfuzzer_sys::fuzz_target;
use portcullis::config::BearerIssuer;
use portcullis::token::bearer::{self, KeySet};
use portcullis::token::testkit::{jwks, sign_hs256, SigningKey};
use serde_json::{json, Map, Value};

const ISS: &str = "https://issuer.example.com";
const NOW: i64 = 1_800_000_000;
const LEEWAY: i64 = 60;

struct Env {
    rsa: SigningKey,
    ec256: SigningKey,
    ed: SigningKey,
    other: SigningKey,
    keys: KeySet,
    issuer: BearerIssuer,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let pem = |f: &str| {
            std::fs::read(format!(
                "{}/../tests/data/keys/{f}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap()
        };
        let rsa = SigningKey::from_pem("rsa1", Algorithm::RS256, &pem("rsa1.pem")).unwrap();
        let ec256 = SigningKey::from_pem("ec256", Algorithm::ES256, &pem("ec256.pem")).unwrap();
        let ed = SigningKey::from_pem("ed", Algorithm::EdDSA, &pem("ed25519.pem")).unwrap();
        let other = SigningKey::from_pem("ec256", Algorithm::RS256, &pem("other_rsa.pem")).unwrap();
        let mut doc = jwks(&[&rsa, &ec256, &ed]);
        doc["keys"]
            .as_array_mut()
            .unwrap()
            .push(json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}));
        Env {
            keys: KeySet::from_jwks(&doc).unwrap(),
            rsa,
            ec256,
            ed,
            other,
            issuer: BearerIssuer {
                issuer: ISS.into(),
                jwks_uri: None,
                audiences: vec!["api".into()],
                algorithms: Vec::new(),
                user_claim: "sub".into(),
                email_claim: "email".into(),
                groups_claim: "groups".into(),
            },
        }
    })
}

#[derive(Debug, Arbitrary)]
enum Input {
    Raw(String),
    Signed(Signed),
    /// A JWKS document from the network.
    Jwks(String),
}

#[derive(Debug, Arbitrary)]
struct Signed {
    /// 0 ES256, 1 EdDSA, 2 RS256 (slow: rarely), 3 HS256 with the `oct` secret, 4 a key not in
    /// the set under a known kid.
    signer: u8,
    kid: Kid,
    header_alg: Option<u8>,
    crit: bool,
    iss: Choice,
    aud: Aud,
    exp: Option<Num>,
    nbf: Option<Num>,
    sub: Option<Json>,
    groups: Option<Json>,
    extra: Vec<(String, Json)>,
    tamper: Option<(u16, u8)>,
}

#[derive(Debug, Arbitrary)]
enum Kid {
    Right,
    None,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Choice {
    Right,
    Missing,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Aud {
    Right,
    InArray(Vec<String>),
    Missing,
    Other(Json),
}

#[derive(Debug, Arbitrary)]
enum Num {
    /// Seconds from now.
    Offset(i32),
    Float(f64),
    Json(Json),
}

#[derive(Debug, Clone, Arbitrary)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Vec<String>),
}

impl Json {
    fn value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => json!(b),
            Json::Int(i) => json!(i),
            Json::Float(f) => json!(f),
            Json::Str(s) => json!(s),
            Json::Arr(a) => json!(a),
        }
    }
}

fn num(n: &Num) -> Value {
    match n {
        Num::Offset(o) => json!(NOW + i64::from(*o)),
        Num::Float(f) => json!(f),
        Num::Json(j) => j.value(),
    }
}

fn signed(s: &Signed, env: &Env) {
    let mut claims = Map::new();
    for (k, v) in &s.extra {
        claims.insert(k.clone(), v.value());
    }
    match &s.iss {
        Choice::Right => {
            claims.insert("iss".into(), json!(ISS));
        }
        Choice::Missing => {}
        Choice::Other(o) => {
            claims.insert("iss".into(), json!(o));
        }
    }
    match &s.aud {
        Aud::Right => {
            claims.insert("aud".into(), json!("api"));
        }
        Aud::InArray(a) => {
            let mut a = a.clone();
            a.push("api".into());
            claims.insert("aud".into(), json!(a));
        }
        Aud::Missing => {}
        Aud::Other(j) => {
            claims.insert("aud".into(), j.value());
        }
    }
    if let Some(e) = &s.exp {
        claims.insert("exp".into(), num(e));
    }
    if let Some(n) = &s.nbf {
        claims.insert("nbf".into(), num(n));
    }
    if let Some(j) = &s.sub {
        claims.insert("sub".into(), j.value());
    }
    if let Some(j) = &s.groups {
        claims.insert("groups".into(), j.value());
    }
    let claims = Value::Object(claims);

    let signer = s.signer % 16;
    let (key, forged) = match signer {
        0..=7 => (&env.ec256, false),
        8..=13 => (&env.ed, false),
        14 => (&env.rsa, false),
        _ => (&env.other, true),
    };
    let token = if s.crit && s.tamper.is_none() && s.header_alg == Some(255) {
        // HS256 keyed with the JWKS's own symmetric secret (alg confusion).
        sign_hs256("hmac", b"secret", &claims)
    } else {
        let mut h: Header = key.header();
        match &s.kid {
            Kid::Right => {}
            Kid::None => h.kid = None,
            Kid::Other(k) => h.kid = Some(k.clone()),
        }
        if s.crit {
            h.crit = Some(vec!["exp".into()]);
        }
        key.sign_with(&h, &claims)
    };
    if token.is_empty() {
        return;
    }
    let forged =
        forged || token.starts_with("eyJ") && bearer::header_kid(&token).as_deref() == Some("hmac");
    let mut tampered = token.clone().into_bytes();
    if let Some((pos, xor)) = s.tamper {
        let i = usize::from(pos) % tampered.len();
        tampered[i] ^= xor;
    }
    let tampered = String::from_utf8_lossy(&tampered).into_owned();
    let result = bearer::verify(&tampered, &env.issuer, &env.keys, NOW, LEEWAY);
    if tampered != token {
        assert!(result.is_err(), "a tampered token verified: {tampered}");
        return;
    }
    let Ok(v) = result else {
        // Check the plain valid case does verify.
        let plain = matches!(s.iss, Choice::Right)
            && matches!(s.aud, Aud::Right)
            && matches!(s.exp, Some(Num::Offset(o)) if o > 0)
            && matches!(s.nbf, None | Some(Num::Offset(..=0)))
            && matches!(&s.sub, Some(Json::Str(x)) if !x.is_empty())
            && matches!(s.kid, Kid::Right | Kid::None)
            && !s.crit
            && !forged
            && s.extra.is_empty();
        assert!(
            !plain,
            "a plain valid token was refused: {result:?} {claims}"
        );
        return;
    };
    assert!(
        !forged,
        "a token signed with a key outside the JWKS verified"
    );
    assert!(!s.crit, "a token with crit verified");
    assert_eq!(claims["iss"], json!(ISS));
    let aud_ok = match &claims["aud"] {
        Value::String(a) => a == "api",
        Value::Array(a) => a.iter().any(|x| x == "api"),
        _ => false,
    };
    assert!(aud_ok, "aud {} accepted", claims["aud"]);
    let exp = claims["exp"].as_f64().expect("exp is a number");
    assert!(
        exp + LEEWAY as f64 > (NOW - 1) as f64,
        "expired token accepted: exp {exp}"
    );
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_f64().expect("nbf is a number");
        assert!(
            nbf - LEEWAY as f64 <= (NOW + 1) as f64,
            "future nbf accepted: {nbf}"
        );
    }
    assert!(!v.user.is_empty());
    match &claims["sub"] {
        Value::String(sub) => assert_eq!(&v.user, sub),
        // Integers must read back exactly. A float is parsed twice (here and in the verifier)
        // by serde_json, whose default float parsing may land one ULP apart: compare within that.
        Value::Number(n) if n.is_f64() => {
            let (got, want) = (
                v.user.parse::<f64>().unwrap_or(f64::NAN),
                n.as_f64().unwrap_or(0.0),
            );
            assert!(
                (got - want).abs() <= f64::EPSILON * got.abs().max(want.abs()),
                "user {got} from sub {want}"
            );
        }
        Value::Number(n) => assert_eq!(v.user, n.to_string()),
        other => panic!("user from a sub of {other}"),
    }
}

fuzz_target!(|input: Input| {
    let env = env();
    match input {
        Input::Raw(token) => {
            let _ = bearer::shape(&token);
            let _ = bearer::unverified_issuer(&token);
            let _ = bearer::header_kid(&token);
            let r = bearer::verify(&token, &env.issuer, &env.keys, NOW, LEEWAY);
            assert!(r.is_err(), "a made-up token verified: {token:?}");
        }
        Input::Signed(s) => signed(&s, env),
        Input::Jwks(doc) => {
            if let Ok(v) = serde_json::from_str::<Value>(&doc) {
                if let Ok(keys) = KeySet::from_jwks(&v) {
                    let _ = keys.len();
                    let t = env
                        .ec256
                        .sign(&json!({"iss": ISS, "aud": "api", "exp": NOW + 60, "sub": "x"}));
                    // Whatever keys came out, verifying with them must not panic.
                    let _ = bearer::verify(&t, &env.issuer, &keys, NOW, LEEWAY);
                }
            }
        }
    }
});
