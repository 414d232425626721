//! Encrypted session cookie codec.
//!
//! A session payload is serialized to JSON and sealed with AES-256-GCM (the `aes-gcm` crate; no hand-written
//! crypto). The cookie value is URL-safe base64 without padding (`A-Z a-z 0-9 - _`, all valid cookie octets) of
//!
//! ```text
//! version (1 byte, = 1) || nonce (12 random bytes) || ciphertext || GCM tag (16 bytes)
//! ```
//!
//! The associated data is `"portcullis-cookie\0" || version || cookie name`: the prefix and the version have a fixed
//! length, so the name is unambiguous, and a value sealed for one cookie name does not open under another
//! (`session` vs `session_0`, or the session cookie vs the CSRF cookie).
//!
//! A fresh random nonce is drawn from the OS for every seal, so one key never repeats a nonce in practice (random
//! 96-bit nonces are fine up to about 2^32 seals per key; rotate keys long before that). Compare
//! mod_auth_openidc CVE-2021-32791, which used a static IV.
//!
//! Expiry is not checked here. The session type carries `expires_at` inside the plaintext, and the caller checks it
//! against an injected clock. Because the whole payload is inside the AEAD, an attacker can neither read nor extend
//! it: any change to any byte fails the tag check (unlike Envoy CVE-2023-35941, where expiry sat beside an ambiguous
//! MAC).
//!
//! Key rotation: the first key seals; every key is tried when opening. Large values are split over several cookies
//! named `<name>_0`, `<name>_1`, … (the oauth2-proxy convention).

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key};
use base64::alphabet;
use base64::engine::general_purpose::{
    GeneralPurpose, GeneralPurposeConfig, STANDARD, URL_SAFE_NO_PAD,
};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Longest value placed in one cookie.
///
/// Browsers keep at least 4096 bytes of name plus value per cookie (RFC 6265 §6.1; Chromium and Firefox measure
/// name + value), and oauth2-proxy splits once a whole `Set-Cookie` line passes 4000. 3800 keeps name, `=`, value and
/// the usual attributes (`Path`, `Domain`, `Max-Age`, `HttpOnly`, `Secure`, `SameSite`, ~100–200 bytes) under that,
/// for cookie names up to ~196 bytes. Longer names shrink the chunk further (see [`CookieCodec::split`]).
pub const MAX_COOKIE_VALUE: usize = 3800;

/// Most cookies one sealed value may be split into. Five chunks is ~19 KB of `Cookie` header, already past nginx's
/// default 8 KB header line; a session that needs more belongs in a server-side store.
pub const MAX_CHUNKS: usize = 5;

/// Budget for `name=value` of one cookie (the oauth2-proxy split threshold).
const COOKIE_BUDGET: usize = 4000;
/// Format version, the first byte of every sealed value and part of the associated data.
const VERSION: u8 = 1;
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Fixed-length prefix of the associated data; the version byte and the cookie name follow it.
const AD_PREFIX: &[u8] = b"portcullis-cookie\0";
/// No sealed value longer than this can have come from [`CookieCodec::split`], so [`CookieCodec::open`] rejects it
/// before decoding (bounds the work an attacker-supplied cookie can cause).
const MAX_SEALED_LEN: usize = MAX_CHUNKS * MAX_COOKIE_VALUE;
/// A chunk must hold at least one whole UTF-8 character so splitting always makes progress.
const MIN_CHUNK: usize = 4;

/// Accepts padded and unpadded input; strict about everything else.
const LENIENT_PADDING: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT_PADDING);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT_PADDING);

/// A 32-byte AES-256-GCM key. Debug prints `CookieKey([redacted])`.
#[derive(Clone)]
pub struct CookieKey([u8; KEY_LEN]);

/// Why a configured cookie key was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KeyError {
    #[error("cookie key is not valid base64; generate one with `openssl rand -base64 32`")]
    NotBase64,
    #[error(
        "cookie key must decode to exactly 32 bytes, got {0} bytes; generate one with `openssl rand -base64 32`"
    )]
    WrongLength(usize),
}

/// Encrypts and decrypts cookie payloads. `keys[0]` encrypts; all keys are tried for decryption (rotation).
pub struct CookieCodec {
    /// Never empty: `new` always puts the current key first.
    keys: Vec<Aes256Gcm>,
    max_chunks: usize,
}

/// Why a payload could not be turned into cookies.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("could not serialize the cookie payload")]
    Serialize(#[from] serde_json::Error),
    #[error("could not encrypt the cookie payload")]
    Encrypt,
    #[error(
        "sealed cookie value is {len} bytes, more than fits in {} cookies; keep less in the session",
        MAX_CHUNKS
    )]
    TooLarge { len: usize },
}

// === impl CookieKey ===

impl CookieKey {
    /// A key for another purpose, derived from this one (HMAC-SHA256 over `purpose`), so the
    /// cookie key itself is used for nothing but cookies.
    pub fn derive(&self, purpose: &str) -> [u8; KEY_LEN] {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC takes keys of any length");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Decode base64 (standard or URL-safe, padded or not) into exactly 32 bytes.
    ///
    /// Surrounding whitespace is ignored, so a key file ending in a newline works.
    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        let s = s.trim();
        let bytes = STANDARD_LENIENT
            .decode(s)
            .or_else(|_| URL_SAFE_LENIENT.decode(s))
            .map_err(|_| KeyError::NotBase64)?;
        let key: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::WrongLength(bytes.len()))?;
        Ok(Self(key))
    }

    /// A fresh random key from the operating system's RNG.
    pub fn generate() -> Self {
        let mut key = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut key);
        Self(key)
    }

    /// Standard base64, padded (the same shape `openssl rand -base64 32` prints).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(self.0))
    }
}

impl fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieKey([redacted])")
    }
}

// === impl CookieCodec ===

impl CookieCodec {
    /// `current` seals new values; `current` and then each of `previous` are tried when opening.
    pub fn new(current: &CookieKey, previous: &[CookieKey]) -> Self {
        let keys = std::iter::once(current)
            .chain(previous)
            .map(CookieKey::cipher)
            .collect();
        Self {
            keys,
            max_chunks: MAX_CHUNKS,
        }
    }

    /// Seal `payload` for cookie `name`. See the module docs for the format.
    pub fn seal<T: Serialize>(&self, name: &str, payload: &T) -> Result<String, SealError> {
        let plaintext = serde_json::to_vec(payload)?;
        let cipher = self.keys.first().ok_or(SealError::Encrypt)?;

        // The 96-bit nonce must never repeat under one key; it need not be secret. The
        // thread-local CSPRNG (ChaCha12, seeded and periodically reseeded from the OS, reseeded
        // after fork) gives that without a getrandom system call per sealed cookie.
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let aad = associated_data(name);
        let sealed = cipher
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Encrypt)?;

        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// Open a sealed value; any failure (bad base64, wrong version, short, tampered, wrong name, unknown key, bad
    /// JSON) gives `None`. Never panics. Expiry is the caller's check.
    pub fn open<T: DeserializeOwned>(&self, name: &str, value: &str) -> Option<T> {
        if value.len() > MAX_SEALED_LEN {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
        let (&version, rest) = bytes.split_first()?;
        if version != VERSION || rest.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, ciphertext) = rest.split_first_chunk::<NONCE_LEN>()?;
        let nonce = (*nonce).into();
        let aad = associated_data(name);
        let plaintext = self.keys.iter().find_map(|cipher| {
            cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: ciphertext,
                        aad: &aad,
                    },
                )
                .ok()
        })?;
        serde_json::from_slice(&plaintext).ok()
    }

    /// Split a sealed value into `(cookie name, value)` pairs.
    ///
    /// One cookie `(name, value)` when `name=value` fits (value at most [`MAX_COOKIE_VALUE`] and name, `=` and value
    /// within 4000 bytes); otherwise `(name_0, part)`, `(name_1, part)`, … under the same rule per chunk.
    /// `TooLarge` when more than [`MAX_CHUNKS`] cookies would be needed.
    ///
    /// The caller should expire every name in [`all_names`](Self::all_names) that is not returned, since
    /// [`join`](Self::join) prefers a stale `name` over fresh chunks.
    pub fn split(&self, name: &str, sealed: String) -> Result<Vec<(String, String)>, SealError> {
        let len = sealed.len();
        if len <= value_budget(name.len()) {
            return Ok(vec![(name.to_owned(), sealed)]);
        }

        let longest_chunk_name = chunk_name(name, self.max_chunks.saturating_sub(1)).len();
        let chunk = value_budget(longest_chunk_name);
        if chunk < MIN_CHUNK || len.div_ceil(chunk) > self.max_chunks {
            return Err(SealError::TooLarge { len });
        }

        let mut cookies = Vec::with_capacity(len.div_ceil(chunk));
        let mut rest = sealed.as_str();
        while !rest.is_empty() {
            if cookies.len() == self.max_chunks {
                // Only reachable for non-ASCII input, where char boundaries shorten chunks.
                return Err(SealError::TooLarge { len });
            }
            let mut end = chunk.min(rest.len());
            while !rest.is_char_boundary(end) {
                end -= 1;
            }
            let (part, tail) = rest.split_at(end);
            cookies.push((chunk_name(name, cookies.len()), part.to_owned()));
            rest = tail;
        }
        Ok(cookies)
    }

    /// Reassemble a sealed value from a lookup of cookie values by name.
    ///
    /// Prefers `name`; else concatenates `name_0`, `name_1`, … while present (at most [`MAX_CHUNKS`]; a gap ends
    /// it). An empty value counts as absent. `None` when nothing is found. The result still has to go through
    /// [`open`](Self::open), which rejects anything incomplete or reordered.
    pub fn join<'a>(&self, name: &str, get: impl Fn(&str) -> Option<&'a str>) -> Option<String> {
        if let Some(value) = get(name).filter(|v| !v.is_empty()) {
            return Some(value.to_owned());
        }
        let mut joined = String::new();
        for index in 0..self.max_chunks {
            match get(&chunk_name(name, index)).filter(|v| !v.is_empty()) {
                Some(part) => joined.push_str(part),
                None => break,
            }
        }
        (!joined.is_empty()).then_some(joined)
    }

    /// Names of every cookie that may hold a value for `name` (`name`, `name_0`..`name_{MAX_CHUNKS-1}`), used to
    /// clear all chunks.
    pub fn all_names(&self, name: &str) -> Vec<String> {
        std::iter::once(name.to_owned())
            .chain((0..self.max_chunks).map(|index| chunk_name(name, index)))
            .collect()
    }
}

impl fmt::Debug for CookieCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieCodec")
            .field("keys", &format_args!("[{} redacted]", self.keys.len()))
            .field("max_chunks", &self.max_chunks)
            .finish()
    }
}

// === helpers ===

/// `AD_PREFIX || VERSION || name`. Only the name varies in length, and it comes last, so two different names can
/// never produce the same associated data.
fn associated_data(name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AD_PREFIX.len() + 1 + name.len());
    aad.extend_from_slice(AD_PREFIX);
    aad.push(VERSION);
    aad.extend_from_slice(name.as_bytes());
    aad
}

fn chunk_name(name: &str, index: usize) -> String {
    format!("{name}_{index}")
}

/// Longest value a cookie called `name_len` bytes may carry.
fn value_budget(name_len: usize) -> usize {
    MAX_COOKIE_VALUE.min(COOKIE_BUDGET.saturating_sub(name_len + 1))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    use super::*;

    const NAME: &str = "_portcullis";

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct TestSession {
        sub: String,
        email: Option<String>,
        groups: Vec<String>,
        scores: Vec<i64>,
        expires_at: u64,
    }

    fn session() -> TestSession {
        TestSession {
            sub: "user-123".into(),
            email: Some("ada@example.com".into()),
            groups: vec!["admins".into(), "ünïcødé 🍪".into()],
            scores: vec![-1, 0, i64::MAX],
            expires_at: 1_700_000_000,
        }
    }

    fn fresh_codec() -> (CookieKey, CookieCodec) {
        let key = CookieKey::generate();
        let codec = CookieCodec::new(&key, &[]);
        (key, codec)
    }

    fn decode(value: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD
            .decode(value)
            .expect("sealed value is base64")
    }

    fn encode(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn opens(codec: &CookieCodec, name: &str, value: &str) -> bool {
        codec.open::<TestSession>(name, value).is_some()
    }

    /// The shortest sealed value of at least `len` characters (`len` itself when it is a multiple of 4; unpadded
    /// base64 never has length 4k+1). The payload is a JSON string of `x`.
    fn sealed_of_len(codec: &CookieCodec, len: usize) -> String {
        let framing = 1 + NONCE_LEN + TAG_LEN + 2;
        let mut fill = (len * 3 / 4).saturating_sub(framing + 2);
        loop {
            let sealed = codec.seal(NAME, &"x".repeat(fill)).expect("seal");
            if sealed.len() >= len {
                return sealed;
            }
            fill += 1;
        }
    }

    // --- seal / open ---

    #[test]
    fn round_trip() {
        let (_, codec) = fresh_codec();
        let sealed = codec.seal(NAME, &session()).expect("seal");
        assert_eq!(codec.open::<TestSession>(NAME, &sealed), Some(session()));
    }

    #[test]
    fn layout_is_version_nonce_ciphertext_tag() {
        let (_, codec) = fresh_codec();
        let json_len = serde_json::to_vec(&session()).expect("json").len();
        let bytes = decode(&codec.seal(NAME, &session()).expect("seal"));
        assert_eq!(bytes[0], VERSION);
        assert_eq!(bytes.len(), 1 + NONCE_LEN + json_len + TAG_LEN);
    }

    #[test]
    fn sealed_value_uses_only_cookie_safe_characters() {
        let (_, codec) = fresh_codec();
        for _ in 0..50 {
            let sealed = codec.seal(NAME, &session()).expect("seal");
            assert!(sealed
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
    }

    #[test]
    fn payload_is_confidential() {
        let (_, codec) = fresh_codec();
        let bytes = decode(&codec.seal(NAME, &session()).expect("seal"));
        let needle = b"ada@example.com";
        assert!(!bytes.windows(needle.len()).any(|w| w == needle));
    }

    #[test]
    fn fresh_nonce_each_seal() {
        let (_, codec) = fresh_codec();
        let a = codec.seal(NAME, &session()).expect("seal");
        let b = codec.seal(NAME, &session()).expect("seal");
        assert_ne!(a, b);
        assert_ne!(decode(&a)[1..1 + NONCE_LEN], decode(&b)[1..1 + NONCE_LEN]);
        assert!(opens(&codec, NAME, &a) && opens(&codec, NAME, &b));
    }

    #[test]
    fn wrong_key_does_not_open() {
        let (_, codec) = fresh_codec();
        let (_, other) = fresh_codec();
        let sealed = codec.seal(NAME, &session()).expect("seal");
        assert!(!opens(&other, NAME, &sealed));
    }

    #[test]
    fn previous_key_opens_and_current_key_seals() {
        let old = CookieKey::generate();
        let new = CookieKey::generate();
        let old_codec = CookieCodec::new(&old, &[]);
        let rotated = CookieCodec::new(&new, std::slice::from_ref(&old));

        let old_value = old_codec.seal(NAME, &session()).expect("seal");
        assert_eq!(
            rotated.open::<TestSession>(NAME, &old_value),
            Some(session())
        );

        let new_value = rotated.seal(NAME, &session()).expect("seal");
        assert!(opens(&rotated, NAME, &new_value));
        assert!(!opens(&old_codec, NAME, &new_value));
        assert!(opens(&CookieCodec::new(&new, &[]), NAME, &new_value));
    }

    #[test]
    fn several_previous_keys_are_all_tried() {
        let keys: Vec<CookieKey> = (0..3).map(|_| CookieKey::generate()).collect();
        let current = CookieKey::generate();
        let codec = CookieCodec::new(&current, &keys);
        for key in &keys {
            let value = CookieCodec::new(key, &[])
                .seal(NAME, &session())
                .expect("seal");
            assert!(opens(&codec, NAME, &value));
        }
    }

    #[test]
    fn value_moved_to_another_cookie_name_does_not_open() {
        let (_, codec) = fresh_codec();
        let sealed = codec.seal(NAME, &session()).expect("seal");
        for other in [
            "_portcullis_csrf",
            "_portcullis_0",
            "_Portcullis",
            "_portculli",
            "",
            "x",
        ] {
            assert!(!opens(&codec, other, &sealed), "opened under {other:?}");
        }
        let empty_name = codec.seal("", &session()).expect("seal");
        assert!(opens(&codec, "", &empty_name));
        assert!(!opens(&codec, NAME, &empty_name));
    }

    #[test]
    fn every_bit_and_byte_flip_fails() {
        let (_, codec) = fresh_codec();
        let bytes = decode(&codec.seal(NAME, &session()).expect("seal"));
        let masks: Vec<u8> = (0..8).map(|bit| 1u8 << bit).chain([0xFF]).collect();
        for index in 0..bytes.len() {
            for &mask in &masks {
                let mut tampered = bytes.clone();
                tampered[index] ^= mask;
                assert!(
                    !opens(&codec, NAME, &encode(&tampered)),
                    "flip {mask:#04x} at byte {index} opened"
                );
            }
        }
    }

    #[test]
    fn every_truncation_fails() {
        let (_, codec) = fresh_codec();
        let sealed = codec.seal(NAME, &session()).expect("seal");
        let bytes = decode(&sealed);
        for len in 0..bytes.len() {
            assert!(
                !opens(&codec, NAME, &encode(&bytes[..len])),
                "byte truncation {len}"
            );
        }
        for len in 0..sealed.len() {
            assert!(
                !opens(&codec, NAME, &sealed[..len]),
                "text truncation {len}"
            );
        }
    }

    #[test]
    fn appended_bytes_fail() {
        let (_, codec) = fresh_codec();
        let bytes = decode(&codec.seal(NAME, &session()).expect("seal"));
        for extra in [&[0u8][..], &[0, 0, 0, 0], b"AAAA"] {
            let mut longer = bytes.clone();
            longer.extend_from_slice(extra);
            assert!(!opens(&codec, NAME, &encode(&longer)));
        }
    }

    #[test]
    fn changed_version_byte_fails() {
        let (_, codec) = fresh_codec();
        let bytes = decode(&codec.seal(NAME, &session()).expect("seal"));
        for version in [0u8, 2, 0x7F, 0xFF] {
            let mut changed = bytes.clone();
            changed[0] = version;
            assert!(!opens(&codec, NAME, &encode(&changed)));
        }
    }

    #[test]
    fn garbage_does_not_open() {
        let (_, codec) = fresh_codec();
        let sealed = codec.seal(NAME, &session()).expect("seal");
        let one_mb_a = "A".repeat(1 << 20);
        let one_mb_valid = encode(&vec![VERSION; 1 << 20]);
        let inputs = [
            "",
            "A",
            "AA",
            "====",
            "not base64!",
            "ünïcødé 🍪 cookie",
            "\0\0\0",
            "%00",
            &format!("{sealed}="),
            &format!(" {sealed}"),
            &format!("{sealed}\n"),
            &sealed.replace('-', "+").replace('_', "/"),
            &format!("{sealed}{sealed}"),
            &one_mb_a,
            &one_mb_valid,
        ];
        for input in inputs {
            let shown: String = input.chars().take(40).collect();
            assert!(!opens(&codec, NAME, input), "opened {shown:?}");
        }
    }

    #[test]
    fn standard_alphabet_of_sealed_value_does_not_open() {
        // Only URL-safe base64 is produced, so only URL-safe base64 is accepted.
        let (_, codec) = fresh_codec();
        let bytes = decode(&codec.seal(NAME, &session()).expect("seal"));
        assert!(!opens(&codec, NAME, &STANDARD.encode(&bytes)));
    }

    #[test]
    fn other_payload_type_does_not_open() {
        let (_, codec) = fresh_codec();
        let sealed = codec.seal(NAME, &"just a string").expect("seal");
        assert!(!opens(&codec, NAME, &sealed));
        assert_eq!(
            codec.open::<String>(NAME, &sealed).as_deref(),
            Some("just a string")
        );
    }

    #[test]
    fn unserializable_payload_is_a_serialize_error() {
        let (_, codec) = fresh_codec();
        let payload: HashMap<(u8, u8), u8> = HashMap::from([((1, 2), 3)]);
        assert!(matches!(
            codec.seal(NAME, &payload),
            Err(SealError::Serialize(_))
        ));
    }

    // --- split / join ---

    fn jar(cookies: &[(String, String)]) -> HashMap<String, String> {
        cookies.iter().cloned().collect()
    }

    fn join_from(codec: &CookieCodec, jar: &HashMap<String, String>) -> Option<String> {
        codec.join(NAME, |name| jar.get(name).map(String::as_str))
    }

    #[test]
    fn small_value_stays_one_cookie() {
        let (_, codec) = fresh_codec();
        let sealed = codec.seal(NAME, &session()).expect("seal");
        let cookies = codec.split(NAME, sealed.clone()).expect("split");
        assert_eq!(cookies, vec![(NAME.to_owned(), sealed.clone())]);
        assert_eq!(join_from(&codec, &jar(&cookies)), Some(sealed));
    }

    #[test]
    fn split_boundary_is_max_cookie_value() {
        let (_, codec) = fresh_codec();
        let at_limit = sealed_of_len(&codec, MAX_COOKIE_VALUE);
        assert_eq!(at_limit.len(), MAX_COOKIE_VALUE);
        assert_eq!(codec.split(NAME, at_limit).expect("split").len(), 1);
        let over = sealed_of_len(&codec, MAX_COOKIE_VALUE + 1);
        let cookies = codec.split(NAME, over).expect("split");
        assert_eq!(cookies.len(), 2);
        assert_eq!(cookies[0].0, format!("{NAME}_0"));
    }

    #[test]
    fn large_value_chunks_and_rejoins_exactly() {
        let (_, codec) = fresh_codec();
        let mut big = session();
        big.groups = (0..600).map(|i| format!("group-{i:04}")).collect();
        let sealed = codec.seal(NAME, &big).expect("seal");
        assert!(sealed.len() > 2 * MAX_COOKIE_VALUE);

        let cookies = codec.split(NAME, sealed.clone()).expect("split");
        assert_eq!(cookies.len(), sealed.len().div_ceil(MAX_COOKIE_VALUE));
        for (index, (name, value)) in cookies.iter().enumerate() {
            assert_eq!(name, &format!("{NAME}_{index}"));
            assert!(value.len() <= MAX_COOKIE_VALUE);
            assert!(name.len() + 1 + value.len() <= COOKIE_BUDGET);
        }

        let joined = join_from(&codec, &jar(&cookies)).expect("joined value");
        assert_eq!(joined, sealed);
        assert_eq!(codec.open::<TestSession>(NAME, &joined), Some(big));
    }

    #[test]
    fn largest_value_that_fits_round_trips() {
        let (_, codec) = fresh_codec();
        let sealed = sealed_of_len(&codec, MAX_CHUNKS * MAX_COOKIE_VALUE);
        assert_eq!(sealed.len(), MAX_CHUNKS * MAX_COOKIE_VALUE);
        let cookies = codec.split(NAME, sealed.clone()).expect("split");
        assert_eq!(cookies.len(), MAX_CHUNKS);
        let joined = join_from(&codec, &jar(&cookies)).expect("joined value");
        assert_eq!(joined, sealed);
        assert!(codec.open::<String>(NAME, &joined).is_some());
    }

    #[test]
    fn too_large_is_an_error() {
        let (_, codec) = fresh_codec();
        let sealed = sealed_of_len(&codec, MAX_CHUNKS * MAX_COOKIE_VALUE + 1);
        let len = sealed.len();
        match codec.split(NAME, sealed) {
            Err(SealError::TooLarge { len: got }) => assert_eq!(got, len),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn long_names_shrink_chunks() {
        let (_, codec) = fresh_codec();
        let name = "n".repeat(1000);
        let sealed = "A".repeat(6000);
        let cookies = codec.split(&name, sealed.clone()).expect("split");
        assert!(cookies.len() > 2);
        for (cookie_name, value) in &cookies {
            assert!(cookie_name.len() + 1 + value.len() <= COOKIE_BUDGET);
        }
        let joined: String = cookies.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(joined, sealed);

        let absurd = "n".repeat(COOKIE_BUDGET);
        assert!(matches!(
            codec.split(&absurd, "A".repeat(10)),
            Err(SealError::TooLarge { len: 10 })
        ));
    }

    #[test]
    fn non_ascii_input_splits_on_char_boundaries() {
        let (_, codec) = fresh_codec();
        let value = "é".repeat(MAX_COOKIE_VALUE);
        let cookies = codec.split(NAME, value.clone()).expect("split");
        let joined: String = cookies.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(joined, value);
        assert!(matches!(
            codec.split(NAME, "🍪".repeat(MAX_CHUNKS * MAX_COOKIE_VALUE / 4 + 1)),
            Err(SealError::TooLarge { .. })
        ));
    }

    #[test]
    fn join_with_missing_middle_chunk_does_not_open() {
        let (_, codec) = fresh_codec();
        let sealed = sealed_of_len(&codec, 3 * MAX_COOKIE_VALUE);
        let mut jar = jar(&codec.split(NAME, sealed).expect("split"));
        jar.remove(&format!("{NAME}_1"));
        let joined = join_from(&codec, &jar);
        assert_eq!(
            joined.as_deref(),
            jar.get(&format!("{NAME}_0")).map(String::as_str)
        );
        assert!(codec
            .open::<String>(NAME, &joined.expect("first chunk"))
            .is_none());
    }

    #[test]
    fn join_with_swapped_chunks_does_not_open() {
        let (_, codec) = fresh_codec();
        let sealed = sealed_of_len(&codec, 2 * MAX_COOKIE_VALUE);
        let mut jar = jar(&codec.split(NAME, sealed).expect("split"));
        let first = jar.remove(&format!("{NAME}_0")).expect("chunk present");
        let second = jar.remove(&format!("{NAME}_1")).expect("chunk present");
        jar.insert(format!("{NAME}_0"), second);
        jar.insert(format!("{NAME}_1"), first);
        assert!(codec
            .open::<String>(NAME, &join_from(&codec, &jar).expect("joined value"))
            .is_none());
    }

    #[test]
    fn plain_name_takes_precedence_over_chunks() {
        let (_, codec) = fresh_codec();
        let mut jar = HashMap::new();
        jar.insert(format!("{NAME}_0"), "chunk0".to_owned());
        jar.insert(format!("{NAME}_1"), "chunk1".to_owned());
        assert_eq!(join_from(&codec, &jar).as_deref(), Some("chunk0chunk1"));
        jar.insert(NAME.to_owned(), "whole".to_owned());
        assert_eq!(join_from(&codec, &jar).as_deref(), Some("whole"));
    }

    #[test]
    fn join_absent_or_empty_is_none() {
        let (_, codec) = fresh_codec();
        assert_eq!(join_from(&codec, &HashMap::new()), None);
        let mut jar = HashMap::new();
        jar.insert(NAME.to_owned(), String::new());
        jar.insert(format!("{NAME}_0"), String::new());
        jar.insert(format!("{NAME}_1"), "orphan".to_owned());
        assert_eq!(join_from(&codec, &jar), None);
    }

    #[test]
    fn join_reads_at_most_max_chunks() {
        let (_, codec) = fresh_codec();
        let jar: HashMap<String, String> = (0..MAX_CHUNKS + 3)
            .map(|i| (format!("{NAME}_{i}"), i.to_string()))
            .collect();
        let expected: String = (0..MAX_CHUNKS).map(|i| i.to_string()).collect();
        assert_eq!(join_from(&codec, &jar), Some(expected));
    }

    #[test]
    fn all_names_lists_plain_and_chunk_names() {
        let (_, codec) = fresh_codec();
        let names = codec.all_names(NAME);
        assert_eq!(names.len(), MAX_CHUNKS + 1);
        assert_eq!(names[0], NAME);
        for (index, name) in names[1..].iter().enumerate() {
            assert_eq!(name, &format!("{NAME}_{index}"));
        }
    }

    #[test]
    fn codec_debug_is_redacted() {
        let key = CookieKey::generate();
        let codec = CookieCodec::new(&key, std::slice::from_ref(&key));
        let shown = format!("{codec:?}");
        assert!(shown.contains("[2 redacted]"));
        assert!(!shown.contains(&key.to_base64()));
    }

    // --- keys ---

    #[test]
    fn wrong_key_lengths_are_rejected() {
        for len in [0usize, 16, 24, 31, 33, 64] {
            let encoded = STANDARD.encode(vec![7u8; len]);
            assert_eq!(
                CookieKey::from_base64(&encoded).expect_err("rejected"),
                KeyError::WrongLength(len)
            );
        }
    }

    #[test]
    fn non_base64_keys_are_rejected() {
        let good = CookieKey::generate().to_base64();
        for input in [
            "not base64!",
            "%%%%",
            "ünïcødé",
            "A",
            "AB=C",
            &format!("{good}x"),
        ] {
            assert_eq!(
                CookieKey::from_base64(input).expect_err("rejected"),
                KeyError::NotBase64,
                "{input:?}"
            );
        }
    }

    #[test]
    fn both_alphabets_padded_or_not_are_accepted() {
        // 0xFB bytes make `+`/`/` (standard) and `-`/`_` (URL-safe); 32 bytes need one `=` of padding.
        let raw = [0xFBu8; KEY_LEN];
        let standard = STANDARD.encode(raw);
        assert!(standard.contains('+') || standard.contains('/'));
        assert!(standard.ends_with('='));
        let url_safe = base64::engine::general_purpose::URL_SAFE.encode(raw);
        let inputs = [
            standard.clone(),
            standard.trim_end_matches('=').to_owned(),
            url_safe.clone(),
            url_safe.trim_end_matches('=').to_owned(),
            format!("{standard}\n"),
            format!("  {url_safe}\r\n"),
        ];
        for input in inputs {
            let key = CookieKey::from_base64(&input).expect("accepted");
            assert_eq!(key.0, raw, "{input:?}");
            assert_eq!(key.to_base64(), standard);
        }
    }

    #[test]
    fn generated_keys_round_trip_and_differ() {
        let key = CookieKey::generate();
        let encoded = key.to_base64();
        assert_eq!(encoded.len(), 44);
        assert_eq!(
            CookieKey::from_base64(&encoded).expect("round trip").0,
            key.0
        );
        assert_ne!(CookieKey::generate().0, key.0);
    }

    #[test]
    fn key_debug_is_redacted() {
        let key = CookieKey::generate();
        assert_eq!(format!("{key:?}"), "CookieKey([redacted])");
    }

    #[test]
    fn key_error_messages_are_lowercase_and_helpful() {
        for error in [KeyError::NotBase64, KeyError::WrongLength(16)] {
            let message = error.to_string();
            assert!(message.starts_with(char::is_lowercase), "{message}");
            assert!(message.contains("openssl rand -base64 32"), "{message}");
        }
        assert!(KeyError::WrongLength(16)
            .to_string()
            .contains("got 16 bytes"));
    }

    // --- properties ---

    fn any_session() -> impl Strategy<Value = TestSession> {
        (
            any::<String>(),
            proptest::option::of(any::<String>()),
            proptest::collection::vec(any::<String>(), 0..8),
            proptest::collection::vec(any::<i64>(), 0..8),
            any::<u64>(),
        )
            .prop_map(|(sub, email, groups, scores, expires_at)| TestSession {
                sub,
                email,
                groups,
                scores,
                expires_at,
            })
    }

    proptest! {
        #[test]
        fn prop_round_trip_is_exact(payload in any_session(), name in "[A-Za-z0-9_.!#$%&'*+^`|~-]{0,40}") {
            let (_, codec) = fresh_codec();
            let sealed = codec.seal(&name, &payload).expect("seal");
            prop_assert_eq!(codec.open::<TestSession>(&name, &sealed), Some(payload));
        }

        #[test]
        fn prop_split_join_round_trip(payload in any_session(), pad in 0usize..14_000) {
            let (_, codec) = fresh_codec();
            let mut payload = payload;
            payload.sub.push_str(&"p".repeat(pad));
            let sealed = codec.seal(NAME, &payload).expect("seal");
            match codec.split(NAME, sealed.clone()) {
                Ok(cookies) => {
                    prop_assert!(cookies.len() <= MAX_CHUNKS);
                    let joined = join_from(&codec, &jar(&cookies)).expect("joined value");
                    prop_assert_eq!(&joined, &sealed);
                    prop_assert_eq!(codec.open::<TestSession>(NAME, &joined), Some(payload));
                }
                Err(SealError::TooLarge { len }) => {
                    prop_assert_eq!(len, sealed.len());
                    prop_assert!(len > MAX_CHUNKS * MAX_COOKIE_VALUE);
                }
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
        }

        #[test]
        fn prop_open_arbitrary_string_is_none(value in any::<String>()) {
            let (_, codec) = fresh_codec();
            prop_assert!(codec.open::<TestSession>(NAME, &value).is_none());
            prop_assert!(codec.open::<serde_json::Value>(NAME, &value).is_none());
        }

        #[test]
        fn prop_open_arbitrary_cookie_safe_string_is_none(value in "[A-Za-z0-9_-]{0,300}") {
            let (_, codec) = fresh_codec();
            prop_assert!(codec.open::<serde_json::Value>(NAME, &value).is_none());
        }

        #[test]
        fn prop_open_arbitrary_versioned_bytes_is_none(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let (_, codec) = fresh_codec();
            let mut bytes = vec![VERSION];
            bytes.extend_from_slice(&body);
            prop_assert!(codec.open::<serde_json::Value>(NAME, &encode(&bytes)).is_none());
        }
    }
}
