//! The verified-token cache: repeated tokens skip the signature check. Keyed by SHA-256 of the
//! whole token (never the token itself), bounded in size, and an entry is never used at or
//! after the token's own `exp`.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::bearer::Verified;

/// How long one entry is trusted at most, even if the token lives longer: a key the issuer
/// withdraws stops working for cached tokens within this time.
pub const MAX_ENTRY_SECONDS: i64 = 300;

pub struct VerifiedCache {
    max: usize,
    entries: Mutex<HashMap<[u8; 32], (Verified, i64)>>,
}

impl VerifiedCache {
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The cached verification of `token`, if it is still good at `now`.
    pub fn get(&self, token: &str, now: i64) -> Option<Verified> {
        let k = Self::key(token);
        let mut map = self.entries.lock().ok()?;
        match map.get(&k) {
            Some((v, until)) if now < *until => Some(v.clone()),
            Some(_) => {
                map.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Remember a verification made at `now`. Full: expired entries go first, then arbitrary
    /// ones (an attacker can only make us verify more, never accept more).
    pub fn insert(&self, token: &str, v: Verified, now: i64) {
        let until = v.expires_at.min(now.saturating_add(MAX_ENTRY_SECONDS));
        if until <= now {
            return;
        }
        let Ok(mut map) = self.entries.lock() else {
            return;
        };
        if map.len() >= self.max {
            map.retain(|_, (_, u)| *u > now);
        }
        while map.len() >= self.max {
            let Some(victim) = map.keys().next().copied() else {
                break;
            };
            map.remove(&victim);
        }
        map.insert(Self::key(token), (v, until));
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::bearer::VerifiedToken;
    use std::sync::Arc;

    fn v(exp: i64) -> Verified {
        Arc::new(VerifiedToken {
            issuer: "i".into(),
            user: "u".into(),
            email: String::new(),
            preferred_username: "u".into(),
            groups: vec![],
            expires_at: exp,
        })
    }

    #[test]
    fn entries_end_at_the_token_expiry_and_the_bound_holds() {
        let c = VerifiedCache::new(2);
        c.insert("a", v(110), 100);
        assert!(c.get("a", 109).is_some());
        assert!(c.get("a", 110).is_none(), "never at or after exp");
        c.insert("expired", v(100), 100);
        assert!(c.get("expired", 100).is_none());
        for t in ["b", "c", "d", "e"] {
            c.insert(t, v(1_000), 100);
        }
        assert!(c.len() <= 2);
        assert!(c.get("e", 101).is_some(), "the newest is kept");
    }

    #[test]
    fn long_lived_tokens_are_rechecked_after_the_entry_cap() {
        let c = VerifiedCache::new(10);
        c.insert("a", v(100_000), 100);
        assert!(c.get("a", 100 + MAX_ENTRY_SECONDS - 1).is_some());
        assert!(c.get("a", 100 + MAX_ENTRY_SECONDS).is_none());
    }
}
