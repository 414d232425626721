//! A small bounded cache of opened session cookies: a browser sends the same sealed value on
//! every request until its session changes, and opening it (base64, AES-GCM, JSON) was most of
//! a check's cost. An entry maps the exact sealed value to the session it opened to, and lives
//! until that session expires, is evicted, or is forgotten.
//!
//! Only values that opened with one of our keys are ever inserted, and a hit requires the
//! whole sealed value to be equal (the hash only picks the slot), so the cache can never
//! answer for a value that would not have opened to the same session.
//!
//! Revocation must go through [`SessionCache::forget`] (one session id) or
//! [`SessionCache::clear`]: a cached session is otherwise trusted until it expires, exactly as
//! its cookie would be.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::session::Session;

/// Sessions kept at most. An entry holds the sealed value and the session (typically 1–3 KiB
/// each, the ID token being most of it), so the cache stays within a few MiB.
pub const CAPACITY: usize = 1024;
/// Sealed values longer than this are not cached (a chunked session of several cookies).
pub const MAX_VALUE_LEN: usize = 8 * 1024;
/// Characters at the end of a sealed value that are hashed to pick the slot: they hold the
/// AES-GCM tag, which differs for every sealed value.
const TAIL: usize = 32;

struct Entry {
    sealed: Box<str>,
    session: Arc<Session>,
}

/// Opened sessions by sealed cookie value. Cheap to share: one short lock per lookup.
pub struct SessionCache {
    capacity: usize,
    hasher: RandomState,
    inner: Mutex<Inner>,
}

struct Inner {
    entries: HashMap<u64, Entry>,
    /// When expired entries were last swept (Unix seconds).
    swept_at: i64,
}

impl Default for SessionCache {
    fn default() -> Self {
        Self::new(CAPACITY)
    }
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl SessionCache {
    /// A cache of at most `capacity` sessions (0 disables it).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            hasher: RandomState::new(),
            inner: Mutex::new(Inner {
                entries: HashMap::with_capacity(capacity.min(CAPACITY)),
                swept_at: 0,
            }),
        }
    }

    /// The session `sealed` opened to, if cached and still valid at `now`.
    pub fn get(&self, sealed: &str, now: i64) -> Option<Arc<Session>> {
        if self.capacity == 0 || sealed.len() > MAX_VALUE_LEN {
            return None;
        }
        let key = self.key(sealed);
        let session = {
            let mut inner = self.lock();
            let entry = inner.entries.get(&key)?;
            if *entry.sealed != *sealed {
                return None;
            }
            if !entry.session.is_valid_at(now) {
                inner.entries.remove(&key);
                return None;
            }
            entry.session.clone()
        };
        Some(session)
    }

    /// Remember that `sealed` opened to `session` (only a session valid at `now` is kept).
    pub fn insert(&self, sealed: &str, session: &Arc<Session>, now: i64) {
        if self.capacity == 0 || sealed.len() > MAX_VALUE_LEN || !session.is_valid_at(now) {
            return;
        }
        let key = self.key(sealed);
        let entry = Entry {
            sealed: sealed.into(),
            session: Arc::clone(session),
        };
        let mut inner = self.lock();
        if inner.entries.len() >= self.capacity && !inner.entries.contains_key(&key) {
            // Expired entries go first (at most one sweep a second); otherwise an arbitrary
            // one (the map's iteration order is randomly seeded).
            if inner.swept_at != now {
                inner.swept_at = now;
                inner.entries.retain(|_, e| e.session.is_valid_at(now));
            }
            if inner.entries.len() >= self.capacity {
                if let Some(k) = inner.entries.keys().next().copied() {
                    inner.entries.remove(&k);
                }
            }
        }
        inner.entries.insert(key, entry);
    }

    /// Drop every cached copy of the session with this id (for revocation and sign-out).
    pub fn forget(&self, session_id: &str) {
        self.lock()
            .entries
            .retain(|_, e| e.session.id != session_id);
    }

    /// Drop everything.
    pub fn clear(&self) {
        self.lock().entries.clear();
    }

    /// Sessions cached now.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn key(&self, sealed: &str) -> u64 {
        let bytes = sealed.as_bytes();
        let mut h = self.hasher.build_hasher();
        bytes.len().hash(&mut h);
        h.write(&bytes[bytes.len().saturating_sub(TAIL)..]);
        h.finish()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave an entry half-written (inserts and
        // removals are single map operations), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn session(id: &str, expires_at: i64) -> Arc<Session> {
        Arc::new(Session {
            id: id.into(),
            user: format!("user-{id}"),
            email: String::new(),
            preferred_username: String::new(),
            groups: vec!["g".into()],
            id_token: Some("eyJ.token".into()),
            access_token: None,
            created_at: NOW - 10,
            expires_at,
            claims: Default::default(),
            ..Session::anonymous()
        })
    }

    /// Values shaped like sealed cookies: a long common prefix, a distinct tail.
    fn sealed(i: usize) -> String {
        format!("{}{i:032}", "A".repeat(500))
    }

    #[test]
    fn hit_returns_the_session_that_was_inserted() {
        let c = SessionCache::new(8);
        assert_eq!(c.get(&sealed(1), NOW), None);
        c.insert(&sealed(1), &session("s1", NOW + 60), NOW);
        assert_eq!(c.get(&sealed(1), NOW), Some(session("s1", NOW + 60)));
        assert_eq!(c.get(&sealed(2), NOW), None);
    }

    #[test]
    fn same_tail_different_value_is_a_miss() {
        let c = SessionCache::new(8);
        let a = sealed(1);
        c.insert(&a, &session("s1", NOW + 60), NOW);
        // Same length and same last 32 characters (so the same slot), one byte differs earlier.
        let mut b = a.clone().into_bytes();
        b[3] = b'B';
        let b = String::from_utf8(b).expect("ascii");
        assert_eq!(c.key(&a), c.key(&b));
        assert_eq!(c.get(&b, NOW), None);
        assert_eq!(c.get(&a, NOW).map(|s| s.id.clone()), Some("s1".into()));
    }

    #[test]
    fn expired_sessions_are_neither_kept_nor_served() {
        let c = SessionCache::new(8);
        c.insert(&sealed(1), &session("old", NOW), NOW);
        assert!(c.is_empty(), "already expired at insert");
        c.insert(&sealed(2), &session("s2", NOW + 5), NOW);
        assert!(c.get(&sealed(2), NOW + 4).is_some());
        assert_eq!(c.get(&sealed(2), NOW + 5), None);
        assert!(c.is_empty(), "dropped once seen expired");
    }

    #[test]
    fn bounded_and_expired_entries_go_first() {
        let c = SessionCache::new(4);
        for i in 0..3 {
            c.insert(&sealed(i), &session(&format!("s{i}"), NOW + 100), NOW);
        }
        c.insert(&sealed(3), &session("short", NOW + 1), NOW);
        assert_eq!(c.len(), 4);
        // At NOW + 2 "short" has expired: it is the one evicted.
        c.insert(&sealed(4), &session("s4", NOW + 100), NOW + 2);
        assert_eq!(c.len(), 4);
        for i in [0, 1, 2, 4] {
            assert!(c.get(&sealed(i), NOW + 2).is_some(), "{i}");
        }
        for i in 5..100 {
            c.insert(&sealed(i), &session(&format!("s{i}"), NOW + 100), NOW + 2);
            assert!(c.len() <= 4);
        }
        assert!(c.get(&sealed(99), NOW + 2).is_some(), "the newest is kept");
    }

    #[test]
    fn forget_and_clear() {
        let c = SessionCache::new(8);
        c.insert(&sealed(1), &session("s1", NOW + 60), NOW);
        c.insert(&sealed(2), &session("s1", NOW + 60), NOW);
        c.insert(&sealed(3), &session("s3", NOW + 60), NOW);
        c.forget("s1");
        assert_eq!(c.get(&sealed(1), NOW), None);
        assert_eq!(c.get(&sealed(2), NOW), None);
        assert!(c.get(&sealed(3), NOW).is_some());
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn oversized_values_and_zero_capacity_are_not_cached() {
        let c = SessionCache::new(8);
        let big = "A".repeat(MAX_VALUE_LEN + 1);
        c.insert(&big, &session("s", NOW + 60), NOW);
        assert!(c.is_empty());
        let off = SessionCache::new(0);
        off.insert(&sealed(1), &session("s", NOW + 60), NOW);
        assert_eq!(off.get(&sealed(1), NOW), None);
    }
}
