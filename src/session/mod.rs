//! Sessions: what a login leaves behind, and the pending-login record between `/start` and
//! `/callback`. Stored in AES-GCM encrypted cookies (`cookie.rs`, `store.rs`).

pub mod cache;
pub mod cookie;
pub mod store;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

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
    pub created_at: i64,
    pub expires_at: i64,
    /// Claims that `require` rules look at (only those, to keep the cookie small).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, serde_json::Value>,
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
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
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
            claims: Default::default(),
        };
        assert!(s.is_valid_at(100));
        assert!(s.is_valid_at(199));
        assert!(!s.is_valid_at(200));
        assert!(!s.is_valid_at(-1000), "created far in the future");
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(random_id(), random_id());
        assert_eq!(random_id().len(), 22);
    }
}
