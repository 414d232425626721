//! jsonwebtoken's signature checks on `ring` (already in the tree through rustls).
//!
//! jsonwebtoken 11 lets a process install its own `CryptoProvider`: a factory of signers and
//! verifiers behind the `signature` crate's traits. jsonwebtoken still does everything JWT
//! (header and claim parsing, base64url, `alg` checks, `iss`/`aud`/required claims); this
//! module only hands the RSA (RS*, PS*) and ECDSA (ES256, ES384) signature checks to ring,
//! several times faster than the RustCrypto crates of the default `rust_crypto` provider
//! (issue 10: a cold RS256 verify went from 210–310 µs to 40–45 µs, ES256 from 270–570 to
//! 90–110 µs). EdDSA (ed25519-dalek is the faster one), HMAC, signing (tests, benchmarks)
//! and the JWK helpers stay RustCrypto's.
//!
//! [`install`] must run before jsonwebtoken first picks its provider; every function of
//! `token::bearer` and `token::testkit` calls it, and so does `main`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use jsonwebtoken::crypto::{rust_crypto, CryptoProvider, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};
use ring::signature as ring_sig;

/// RustCrypto's signers and JWK helpers, ring's verifiers.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: rust_crypto::DEFAULT_PROVIDER.signer_factory,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: RC.rsa_pub_components_from_private_key,
        rsa_pub_components_from_public_key: RC.rsa_pub_components_from_public_key,
        ec_pub_components_from_private_key: RC.ec_pub_components_from_private_key,
        ed_pub_components_from_private_key: RC.ed_pub_components_from_private_key,
        compute_digest: RC.compute_digest,
    },
};
static RC: &KeyUtils = &rust_crypto::DEFAULT_PROVIDER.key_utils;

static INSTALL: Once = Once::new();
static OURS: AtomicBool = AtomicBool::new(false);

/// Install the ring-backed provider as jsonwebtoken's process default (idempotent, cheap after
/// the first call). Returns whether it is the one in effect: false only if jsonwebtoken had
/// already chosen its own before the first call (then verification is correct, just slower).
pub fn install() -> bool {
    INSTALL.call_once(|| {
        let ok = PROVIDER.install_default().is_ok();
        OURS.store(ok, Ordering::Relaxed);
        if !ok {
            tracing::warn!("jsonwebtoken chose its crypto provider before ours; bearer verification uses RustCrypto");
        }
    });
    OURS.load(Ordering::Relaxed)
}

/// What one public key is to ring.
enum Public {
    /// RSA modulus and exponent, big-endian without leading zero bytes (ring refuses those;
    /// some issuers publish a JWK `n` with the DER sign byte left on).
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// RSA as PKCS#1 `RSAPublicKey` DER (a PEM key), an EC point (0x04‖x‖y) or an Ed25519 key.
    Bytes(Vec<u8>),
}

struct RingVerifier {
    alg: Algorithm,
    params: &'static dyn ring_sig::VerificationAlgorithm,
    rsa: Option<&'static ring_sig::RsaParameters>,
    key: Public,
}

fn strip_zeros(b: &[u8]) -> Vec<u8> {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b[start..].to_vec()
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    use ring_sig::*;
    let (family, params, rsa): (_, &'static dyn VerificationAlgorithm, _) = match alg {
        Algorithm::RS256 => (
            AlgorithmFamily::Rsa,
            &RSA_PKCS1_2048_8192_SHA256,
            Some(&RSA_PKCS1_2048_8192_SHA256),
        ),
        Algorithm::RS384 => (
            AlgorithmFamily::Rsa,
            &RSA_PKCS1_2048_8192_SHA384,
            Some(&RSA_PKCS1_2048_8192_SHA384),
        ),
        Algorithm::RS512 => (
            AlgorithmFamily::Rsa,
            &RSA_PKCS1_2048_8192_SHA512,
            Some(&RSA_PKCS1_2048_8192_SHA512),
        ),
        Algorithm::PS256 => (
            AlgorithmFamily::Rsa,
            &RSA_PSS_2048_8192_SHA256,
            Some(&RSA_PSS_2048_8192_SHA256),
        ),
        Algorithm::PS384 => (
            AlgorithmFamily::Rsa,
            &RSA_PSS_2048_8192_SHA384,
            Some(&RSA_PSS_2048_8192_SHA384),
        ),
        Algorithm::PS512 => (
            AlgorithmFamily::Rsa,
            &RSA_PSS_2048_8192_SHA512,
            Some(&RSA_PSS_2048_8192_SHA512),
        ),
        Algorithm::ES256 => (AlgorithmFamily::Ec, &ECDSA_P256_SHA256_FIXED, None),
        Algorithm::ES384 => (AlgorithmFamily::Ec, &ECDSA_P384_SHA384_FIXED, None),
        // Ed25519 stays RustCrypto's (ed25519-dalek): faster than ring's here (bench/README.md),
        // and so do HMAC (never used for bearer tokens: symmetric keys are dropped) and
        // anything jsonwebtoken adds later.
        _ => return (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(alg, key),
    };
    if key.family() != family {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let key = match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => Public::Rsa {
            n: strip_zeros(n),
            e: strip_zeros(e),
        },
        DecodingKeyKind::SecretOrDer(b) => Public::Bytes(b.clone()),
    };
    Ok(Box::new(RingVerifier {
        alg: *alg,
        params,
        rsa,
        key,
    }))
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let ok = match (&self.key, self.rsa) {
            (Public::Rsa { n, e }, Some(params)) => {
                ring_sig::RsaPublicKeyComponents { n, e }.verify(params, msg, sig)
            }
            (Public::Rsa { .. }, None) => return Err(signature::Error::new()),
            (Public::Bytes(b), _) => {
                ring_sig::UnparsedPublicKey::new(self.params, b).verify(msg, sig)
            }
        };
        ok.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn installed_before_anything_else() {
        assert!(install());
        assert!(install());
    }

    const RSA1: &str = include_str!("../../tests/data/keys/rsa1.pem");

    fn issuer() -> crate::config::BearerIssuer {
        crate::config::BearerIssuer {
            issuer: "https://i.example".into(),
            jwks_uri: None,
            audiences: vec!["api".into()],
            algorithms: Vec::new(),
            user_claim: "sub".into(),
            email_claim: "email".into(),
            groups_claim: "groups".into(),
        }
    }

    /// Every RSA algorithm verifies on ring, a JWK `n` with a leading zero byte (the DER sign
    /// byte some issuers leave on) works, and a changed signature never verifies.
    #[test]
    fn rsa_algorithms_and_padded_modulus() {
        use crate::token::bearer::{verify, BearerError, KeySet};
        use crate::token::testkit::SigningKey;
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let key = SigningKey::from_pem("k", Algorithm::RS256, RSA1.as_bytes()).unwrap();
        let mut jwk = key.jwk.clone();
        jwk.as_object_mut().unwrap().remove("alg");
        let n = b64.decode(jwk["n"].as_str().unwrap()).unwrap();
        let mut padded = jwk.clone();
        padded["n"] = serde_json::json!(b64.encode([&[0u8][..], &n].concat()));
        let claims = serde_json::json!({"iss": "https://i.example", "aud": "api", "sub": "s", "exp": 2_000_000_000i64});
        for doc in [jwk, padded] {
            let set = KeySet::from_jwks(&serde_json::json!({ "keys": [doc] })).unwrap();
            assert_eq!(set.len(), 1);
            for alg in [
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ] {
                let mut h = key.header();
                h.alg = alg;
                let token = key.sign_with(&h, &claims);
                let v = verify(&token, &issuer(), &set, 1_900_000_000, 0);
                assert_eq!(v.map(|v| v.user), Ok("s".to_string()), "{alg:?}");
                let (head, sig) = token.rsplit_once('.').unwrap();
                let mut sig = b64.decode(sig).unwrap();
                sig[10] ^= 1;
                let bad = format!("{head}.{}", b64.encode(sig));
                assert_eq!(
                    verify(&bad, &issuer(), &set, 1_900_000_000, 0).map(|_| ()),
                    Err(BearerError::Signature),
                    "{alg:?}"
                );
            }
        }
    }

    #[test]
    fn leading_zeros_are_stripped() {
        assert_eq!(strip_zeros(&[0, 0, 1, 0]), vec![1, 0]);
        assert_eq!(strip_zeros(&[0]), Vec::<u8>::new());
        assert_eq!(strip_zeros(&[7]), vec![7]);
    }
}
