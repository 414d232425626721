//! Support for tests and benchmarks (unit, integration, `bench/`): sign tokens with a PEM key
//! and publish its public half as a JWK. Never used by the proxy itself.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// A private key that signs test tokens, with its `kid` and public JWK.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    key: EncodingKey,
    /// The public JWK (with `kid`, `use: sig` and `alg`).
    pub jwk: Value,
}

impl SigningKey {
    /// From a PKCS#8 PEM private key; `alg` picks RSA, EC or Ed25519 parsing.
    pub fn from_pem(
        kid: &str,
        alg: Algorithm,
        pem: &[u8],
    ) -> Result<Self, jsonwebtoken::errors::Error> {
        super::crypto::install();
        let key = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem)?,
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem)?,
            _ => EncodingKey::from_rsa_pem(pem)?,
        };
        let mut jwk = Jwk::from_encoding_key(&key, alg)?;
        jwk.common.key_id = Some(kid.to_string());
        let mut jwk = serde_json::to_value(&jwk)?;
        jwk["use"] = json!("sig");
        Ok(Self {
            kid: kid.to_string(),
            alg,
            key,
            jwk,
        })
    }

    /// A header for this key (`alg`, `kid`, `typ: JWT`).
    pub fn header(&self) -> Header {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        h
    }

    /// Sign `claims` with this key's header.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with(&self.header(), claims)
    }

    /// Sign `claims` under any header (tests of header attacks).
    pub fn sign_with(&self, header: &Header, claims: &Value) -> String {
        super::crypto::install();
        jsonwebtoken::encode(header, claims, &self.key).unwrap_or_default()
    }
}

/// A JWKS document with these keys' public halves.
pub fn jwks(keys: &[&SigningKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
}

/// Sign with any raw HMAC secret (the alg-confusion attack: HS256 keyed with a public key).
pub fn sign_hs256(kid: &str, secret: &[u8], claims: &Value) -> String {
    super::crypto::install();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(kid.to_string());
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_secret(secret)).unwrap_or_default()
}
