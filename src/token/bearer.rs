//! Pure bearer JWT verification: a token, one issuer's settings, a snapshot of its key set and
//! `now` in; verified claims or a short reason out. No I/O and no wall clock: key sets come
//! from `jwks.rs`, time from the caller. Signature and claim checks are jsonwebtoken's; this
//! file only bounds the input, picks the key and maps claims to an identity.
//!
//! Refused before any key is touched: tokens over [`MAX_TOKEN_BYTES`], anything but three
//! base64url parts (JWE, truncated, padded), `alg` values jsonwebtoken does not know (`none`),
//! a `crit` header (we implement no extensions, RFC 7515 §4.1.11), JWE header fields.
//! Then: `alg` must be allowed by the key's type and `alg`, and by the issuer's list (never
//! HS*: symmetric keys are dropped when a key set is loaded), `iss` exact, `aud` (string or
//! array) containing one of ours, `exp` required, `exp`/`nbf` within the leeway.

use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::config::BearerIssuer;

/// Longer tokens are refused unread (a generous bound: real JWTs are 1–4 KB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Keys beyond this many in one JWKS are ignored.
pub const MAX_KEYS: usize = 64;
/// A token without `kid` is tried against at most this many keys.
const MAX_KEYLESS_TRIES: usize = 4;

/// Why a bearer token was refused. The `as_str` text goes into `error_description`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    TooLarge,
    Malformed,
    UnsupportedHeader,
    Algorithm,
    UntrustedIssuer,
    UnknownKey,
    Signature,
    Audience,
    MissingClaim,
    Expired,
    NotYetValid,
    NoSubject,
}

impl BearerError {
    /// Short, fixed text: safe in a header and a log line (never contains token data).
    pub fn as_str(self) -> &'static str {
        match self {
            BearerError::TooLarge => "token too large",
            BearerError::Malformed => "malformed token",
            BearerError::UnsupportedHeader => "unsupported token header",
            BearerError::Algorithm => "algorithm not allowed",
            BearerError::UntrustedIssuer => "untrusted issuer",
            BearerError::UnknownKey => "unknown signing key",
            BearerError::Signature => "invalid signature",
            BearerError::Audience => "audience not accepted",
            BearerError::MissingClaim => "missing required claim",
            BearerError::Expired => "token expired",
            BearerError::NotYetValid => "token not yet valid",
            BearerError::NoSubject => "no user claim",
        }
    }
}

impl std::fmt::Display for BearerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a `Bearer` credential looks like before anything is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// No `.` at all: an opaque token (not ours to verify).
    Opaque,
    /// Three non-empty base64url parts.
    Jws,
    /// Anything else: JWE (five parts), truncated, bad characters, too large.
    Bad(BearerError),
}

/// Classify a credential by its shape only.
pub fn shape(token: &str) -> Shape {
    if token.len() > MAX_TOKEN_BYTES {
        return Shape::Bad(BearerError::TooLarge);
    }
    if !token.contains('.') {
        return Shape::Opaque;
    }
    let b64url = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() == 3 && parts.iter().all(|p| b64url(p)) {
        Shape::Jws
    } else {
        Shape::Bad(BearerError::Malformed)
    }
}

/// One verification key from a JWKS.
#[derive(Clone)]
pub struct Key {
    pub kid: Option<String>,
    /// Algorithms this key may verify: from its type (and `alg`, when the JWK names one).
    pub algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

/// An immutable snapshot of one issuer's keys.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<_> = self.keys.iter().map(|k| k.kid.as_deref()).collect();
        f.debug_struct("KeySet").field("kids", &kids).finish()
    }
}

impl KeySet {
    /// Build from a JWKS document. Keys that cannot verify signatures here (symmetric `oct`,
    /// `use: enc`, unknown curves or types, broken parameters) are skipped, not fatal.
    pub fn from_jwks(doc: &Value) -> Result<KeySet, &'static str> {
        super::crypto::install();
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("no \"keys\" array")?;
        let keys = list
            .iter()
            .take(MAX_KEYS)
            .filter_map(|v| serde_json::from_value::<Jwk>(v.clone()).ok())
            .filter_map(|jwk| Key::from_jwk(&jwk))
            .collect();
        Ok(KeySet { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

impl Key {
    fn from_jwk(jwk: &Jwk) -> Option<Key> {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return None;
        }
        let by_type: Vec<Algorithm> = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => return None,
            },
            AlgorithmParameters::OctetKeyPair(p) => match p.curve {
                EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
                _ => return None,
            },
            // Symmetric keys never verify bearer tokens (alg confusion), nor anything unknown.
            _ => return None,
        };
        let algorithms = match jwk.common.key_algorithm {
            None => by_type,
            Some(a) => {
                let a: Algorithm = a.to_string().parse().ok()?;
                by_type.into_iter().filter(|b| *b == a).collect()
            }
        };
        if algorithms.is_empty() {
            return None;
        }
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some(Key {
            kid: jwk.common.key_id.clone(),
            algorithms,
            key,
        })
    }
}

/// A verified token's identity, mapped with its issuer's claim names.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub issuer: String,
    pub user: String,
    pub email: String,
    pub preferred_username: String,
    pub groups: Vec<String>,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
}

impl std::fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedToken")
            .field("issuer", &self.issuer)
            .field("user", &self.user)
            .field("groups", &self.groups.len())
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The `iss` claim, read *unverified* only to choose which configured issuer's keys to try;
/// the verification that follows requires the same `iss`.
pub fn unverified_issuer(token: &str) -> Result<String, BearerError> {
    #[derive(serde::Deserialize)]
    struct Peek {
        iss: Option<String>,
    }
    let peek: Peek = jsonwebtoken::dangerous::insecure_decode_claims(token)
        .map_err(|_| BearerError::Malformed)?;
    peek.iss.ok_or(BearerError::MissingClaim)
}

/// The `kid` of a token's header (for the unknown-key refetch decision).
pub fn header_kid(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid)
}

/// Verify `token` for `issuer` against `keys` at `now` (Unix seconds) with `leeway` seconds.
pub fn verify(
    token: &str,
    issuer: &BearerIssuer,
    keys: &KeySet,
    now: i64,
    leeway: i64,
) -> Result<VerifiedToken, BearerError> {
    let claims = verify_signature(token, issuer, keys, &["exp", "iss", "aud"])?;
    identity(claims, issuer, now, leeway)
}

/// The shape, header, key, signature, `iss` and `aud` checks of [`verify`], with `required`
/// claims present; returns the claims for the caller's own time and content checks (bearer
/// tokens above, back-channel logout tokens in `oidc::backchannel`).
pub fn verify_signature(
    token: &str,
    issuer: &BearerIssuer,
    keys: &KeySet,
    required: &[&str],
) -> Result<Map<String, Value>, BearerError> {
    super::crypto::install();
    match shape(token) {
        Shape::Jws => {}
        Shape::Opaque => return Err(BearerError::Malformed),
        Shape::Bad(e) => return Err(e),
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| BearerError::Malformed)?;
    if header.crit.is_some() {
        return Err(BearerError::UnsupportedHeader);
    }
    if header.enc.is_some() || header.zip.is_some() {
        return Err(BearerError::Malformed);
    }
    let alg = header.alg;
    let configured_ok = issuer.algorithms.is_empty()
        || issuer
            .algorithms
            .iter()
            .any(|a| a.parse::<Algorithm>().is_ok_and(|a| a == alg));
    if !configured_ok {
        return Err(BearerError::Algorithm);
    }
    let candidates: Vec<&Key> = match &header.kid {
        Some(kid) => keys
            .keys
            .iter()
            .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
            .collect(),
        None => keys
            .keys
            .iter()
            .filter(|k| k.algorithms.contains(&alg))
            .take(MAX_KEYLESS_TRIES)
            .collect(),
    };
    if candidates.is_empty() {
        return Err(BearerError::UnknownKey);
    }
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[issuer.issuer.as_str()]);
    validation.set_audience(&issuer.audiences);
    validation.set_required_spec_claims(required);
    // Time is checked below against the caller's clock, not jsonwebtoken's.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let mut last = BearerError::Algorithm;
    for key in candidates {
        if !key.algorithms.contains(&alg) {
            last = BearerError::Algorithm;
            continue;
        }
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) => last = map_error(e.kind()),
        }
    }
    Err(last)
}

fn map_error(kind: &jsonwebtoken::errors::ErrorKind) -> BearerError {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature
        | K::InvalidEcdsaKey
        | K::InvalidEddsaKey
        | K::InvalidRsaKey(_)
        | K::InvalidKeyFormat => BearerError::Signature,
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm => {
            BearerError::Algorithm
        }
        K::InvalidAudience => BearerError::Audience,
        K::InvalidIssuer => BearerError::UntrustedIssuer,
        K::MissingRequiredClaim(_) | K::InvalidClaimFormat(_) => BearerError::MissingClaim,
        K::ExpiredSignature => BearerError::Expired,
        K::ImmatureSignature => BearerError::NotYetValid,
        _ => BearerError::Malformed,
    }
}

fn number(v: Option<&Value>) -> Option<i64> {
    let v = v?;
    // Fractional NumericDate values are allowed (RFC 7519 §2); whole seconds suffice here.
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

fn string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Time checks and the claim mapping of a token whose signature, `iss` and `aud` passed.
fn identity(
    claims: Map<String, Value>,
    issuer: &BearerIssuer,
    now: i64,
    leeway: i64,
) -> Result<VerifiedToken, BearerError> {
    let exp = number(claims.get("exp")).ok_or(BearerError::MissingClaim)?;
    if exp.saturating_add(leeway) <= now {
        return Err(BearerError::Expired);
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = number(Some(nbf)).ok_or(BearerError::MissingClaim)?;
        if nbf.saturating_sub(leeway) > now {
            return Err(BearerError::NotYetValid);
        }
    }
    let user = string(claims.get(&issuer.user_claim))
        .filter(|u| !u.is_empty())
        .ok_or(BearerError::NoSubject)?;
    // An email the issuer says is unverified is not used for email-domain rules.
    let email_verified = claims.get("email_verified") != Some(&Value::Bool(false));
    let email = string(claims.get(&issuer.email_claim))
        .filter(|_| email_verified)
        .unwrap_or_default();
    let preferred_username =
        string(claims.get("preferred_username")).unwrap_or_else(|| user.clone());
    let groups = match claims.get(&issuer.groups_claim) {
        Some(Value::Array(a)) => a.iter().filter_map(|g| string(Some(g))).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    Ok(VerifiedToken {
        issuer: issuer.issuer.clone(),
        user,
        email,
        preferred_username,
        groups,
        expires_at: exp,
    })
}

/// A shared verified token.
pub type Verified = Arc<VerifiedToken>;

#[cfg(test)]
#[path = "bearer_tests.rs"]
mod tests;
