//! Sessions: what a login leaves behind, and the pending-login record between `/start` and
//! `/callback`. Stored in AES-GCM encrypted cookies (`cookie.rs`, `store.rs`).

pub mod cache;
pub mod cookie;
pub mod redis;
pub mod refresh_lock;
pub mod server;
pub mod sessions;
pub mod store;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use server::Target;
pub use sessions::{Revoked, Sessions};
pub use store::SessionCookies;

/// A signed-in user. Lives encrypted in the session cookie; expiry is checked on the server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Fresh random id at every login.
    pub id: String,
    pub user: String,
    pub email: String,
    pub preferred_username: String,
    pub groups: Vec<String>,
    /// Kept for `authorization: Bearer` and for RP-initiated logout's `id_token_hint`.
    pub id_token: Option<String>,
    /// Kept only when `headers.pass_access_token` needs it.
    pub access_token: Option<String>,
    /// Login time. Refreshes never move it.
    pub created_at: i64,
    /// `created_at + cookie.expire`: the hard end of the session, whatever refreshes happen.
    pub expires_at: i64,
    /// Claims that `require` rules look at (only those, to keep the cookie small).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, serde_json::Value>,
    /// The ID token's `sub`: what revocation by subject and back-channel logout match.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subject: String,
    /// The ID token's `sid` (the IdP's session), when it sent one: back-channel logout by sid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The OAuth refresh token, when the IdP gave one (and `cookie.store_refresh_token`).
    /// Short field names: every byte is paid in the cookie.
    #[serde(default, rename = "rt", skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the tokens expire (Unix seconds): the earlier of the access token's `expires_in`
    /// and the ID token's `exp`; `None` when the IdP said neither.
    #[serde(default, rename = "te", skip_serializing_if = "Option::is_none")]
    pub tokens_expire_at: Option<i64>,
    /// Last refresh (0: never refreshed, so the login time counts).
    #[serde(default, rename = "ra", skip_serializing_if = "is_zero")]
    pub refreshed_at: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Session {
    /// No one: what identity headers carry when a public route is used without a session.
    pub fn anonymous() -> Self {
        Self {
            id: String::new(),
            user: String::new(),
            email: String::new(),
            preferred_username: String::new(),
            groups: Vec::new(),
            id_token: None,
            access_token: None,
            created_at: 0,
            expires_at: 0,
            claims: BTreeMap::new(),
            subject: String::new(),
            sid: None,
            refresh_token: None,
            tokens_expire_at: None,
            refreshed_at: 0,
        }
    }

    /// When the tokens were last obtained: the last refresh, else the login.
    pub fn tokens_obtained_at(&self) -> i64 {
        if self.refreshed_at > 0 {
            self.refreshed_at
        } else {
            self.created_at
        }
    }

    /// Whether the session is still valid at `now` (Unix seconds).
    pub fn is_valid_at(&self, now: i64) -> bool {
        now < self.expires_at && self.created_at <= now + 300
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("groups", &self.groups.len())
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("tokens_expire_at", &self.tokens_expire_at)
            .field("refreshed_at", &self.refreshed_at)
            .finish()
    }
}

/// A login in progress: everything `/callback` needs to finish what `/start` began.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// Validated return URL.
    pub return_to: String,
    /// The redirect_uri sent to the IdP; the token request must repeat it exactly.
    pub redirect_url: String,
    pub created_at: i64,
    /// Creation time in microseconds: orders logins started within the same second, so the
    /// cap on pending logins drops the oldest.
    pub created_us: i64,
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLogin")
            .field("return_to", &self.return_to)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A random id: 16 bytes from the OS RNG, URL-safe base64.
pub fn random_id() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_tokens() {
        let s = Session {
            id: "i".into(),
            user: "u".into(),
            email: "e@x".into(),
            preferred_username: "u".into(),
            groups: vec![],
            id_token: Some("ID-TOKEN-SECRET".into()),
            access_token: Some("ACCESS-SECRET".into()),
            created_at: 0,
            expires_at: 10,
            claims: Default::default(),
            refresh_token: Some("REFRESH-SECRET".into()),
            tokens_expire_at: Some(5),
            refreshed_at: 0,
            subject: String::new(),
            sid: None,
        };
        let d = format!("{s:?}");
        assert!(!d.contains("SECRET"), "{d}");
    }

    #[test]
    fn validity_window() {
        let s = Session {
            id: "i".into(),
            user: "u".into(),
            email: String::new(),
            preferred_username: String::new(),
            groups: vec![],
            id_token: None,
            access_token: None,
            created_at: 100,
            expires_at: 200,
            ..Session::anonymous()
        };
        assert!(s.is_valid_at(100));
        assert!(s.is_valid_at(199));
        assert!(!s.is_valid_at(200));
        assert!(!s.is_valid_at(-1000), "created far in the future");
    }

    #[test]
    fn cookies_sealed_before_refresh_fields_still_open() {
        let mut old = serde_json::to_value(Session {
            id: "i".into(),
            user: "u".into(),
            created_at: 1,
            expires_at: 2,
            ..Session::anonymous()
        })
        .expect("json");
        let obj = old.as_object_mut().expect("object");
        assert!(!obj.contains_key("rt") && !obj.contains_key("te") && !obj.contains_key("ra"));
        obj.remove("claims");
        let back: Session = serde_json::from_value(old).expect("opens");
        assert_eq!(back.refresh_token, None);
        assert_eq!(back.tokens_obtained_at(), 1);
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(random_id(), random_id());
        assert_eq!(random_id().len(), 22);
    }
}

/// Session store operations by outcome, as plain atomics (exported by `metrics` at scrape
/// time), so the store needs no metrics handle.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Loads that found a valid session.
    pub load_valid: std::sync::atomic::AtomicU64,
    /// Loads without a session cookie.
    pub load_absent: std::sync::atomic::AtomicU64,
    /// Loads whose cookie did not open: tampered, truncated, wrong key, oversized.
    pub load_invalid: std::sync::atomic::AtomicU64,
    /// Loads of a session past its expiry.
    pub load_expired: std::sync::atomic::AtomicU64,
    pub save_ok: std::sync::atomic::AtomicU64,
    /// Sessions that could not be stored (sealing failed, too large for the cookies).
    pub save_error: std::sync::atomic::AtomicU64,
    pub clear: std::sync::atomic::AtomicU64,
}

impl StoreStats {
    pub(crate) fn inc(counter: &std::sync::atomic::AtomicU64) {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn get(counter: &std::sync::atomic::AtomicU64) -> u64 {
        counter.load(std::sync::atomic::Ordering::Relaxed)
    }
}
