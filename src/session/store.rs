//! Session and pending-login cookies: names, attributes, chunking and clean-up. Sealing is
//! `cookie::CookieCodec`; this file decides which cookies to set and which to expire.

use std::sync::Arc;

use cookie::time::Duration as CookieDuration;
use cookie::{Cookie, SameSite};
use subtle::ConstantTimeEq;

use crate::authz::input::CheckInput;
use crate::config::CookieConfig;
use crate::error::Error;
use crate::session::cache::SessionCache;
use crate::session::cookie::CookieCodec;
use crate::session::{PendingLogin, Session, StoreStats};

/// Reads and writes the session cookie (`<name>` or `<name>_0..n`) and pending-login cookies
/// (`<name>_csrf_<id>`, one per login in progress, scoped to the proxy prefix).
pub struct SessionCookies {
    codec: CookieCodec,
    name: String,
    domain: Option<String>,
    path: String,
    secure: bool,
    same_site: SameSite,
    expire_secs: i64,
    csrf_expire_secs: i64,
    max_pending: usize,
    /// Path of pending-login cookies: only `<proxy_prefix>/…` needs them.
    csrf_path: String,
    /// Operations by outcome, for `portcullis_session_operations_total`.
    pub stats: std::sync::Arc<StoreStats>,
    /// Sessions already opened, by sealed value (see `cache.rs`; revocation must clear it).
    pub cache: SessionCache,
}

/// Characters of the state used in a pending-login cookie's name.
const STATE_ID_LEN: usize = 12;

impl SessionCookies {
    pub fn new(cfg: &CookieConfig, proxy_prefix: &str) -> Self {
        Self {
            codec: CookieCodec::new(&cfg.key, &cfg.previous_keys),
            name: cfg.name.clone(),
            domain: cfg.domain.clone(),
            path: cfg.path.clone(),
            secure: cfg.secure,
            same_site: cfg.same_site,
            expire_secs: i64::try_from(cfg.expire.as_secs()).unwrap_or(i64::MAX / 2),
            csrf_expire_secs: i64::try_from(cfg.csrf_expire.as_secs()).unwrap_or(900),
            max_pending: cfg.max_pending_logins,
            csrf_path: proxy_prefix.to_string(),
            stats: Default::default(),
            cache: SessionCache::default(),
        }
    }

    /// Session lifetime in seconds.
    pub fn expire_secs(&self) -> i64 {
        self.expire_secs
    }

    /// The valid session in this request, if any. Tampered, truncated, expired, wrong-key or
    /// oversized cookies all read as "no session".
    pub fn load(&self, input: &CheckInput, now: i64) -> Option<Arc<Session>> {
        let s = &self.stats;
        let Some(sealed) = self.codec.join(&self.name, |n| input.cookie(n)) else {
            // A cookie (or first chunk) that does not join reads as invalid, none as absent.
            let any = input.cookie(&self.name).is_some()
                || input.cookie(&format!("{}_0", self.name)).is_some();
            StoreStats::inc(if any { &s.load_invalid } else { &s.load_absent });
            return None;
        };
        let session = match self.cache.get(&sealed, now) {
            Some(session) => session,
            None => {
                let Some(session) = self.codec.open::<Session>(&self.name, &sealed) else {
                    StoreStats::inc(&s.load_invalid);
                    return None;
                };
                let session = Arc::new(session);
                self.cache.insert(&sealed, &session, now);
                session
            }
        };
        let valid = session.is_valid_at(now);
        StoreStats::inc(if valid {
            &s.load_valid
        } else {
            &s.load_expired
        });
        valid.then_some(session)
    }

    /// Set-Cookie lines that store a new `session` (at its login time), expiring chunks the
    /// request had that the new value does not use.
    pub fn save(&self, session: &Session, input: &CheckInput) -> Result<Vec<String>, Error> {
        self.save_at(session, input, session.created_at)
    }

    /// Like [`SessionCookies::save`] at `now`: the cookie's Max-Age is what is left of the
    /// session, so a refreshed cookie never outlives the login's `cookie.expire`.
    pub fn save_at(
        &self,
        session: &Session,
        input: &CheckInput,
        now: i64,
    ) -> Result<Vec<String>, Error> {
        let saved = self.save_value(session, session.expires_at - now, input);
        StoreStats::inc(if saved.is_ok() {
            &self.stats.save_ok
        } else {
            &self.stats.save_error
        });
        saved
    }

    /// Whatever the session cookie holds (a session, or a server-side store's ticket), if it
    /// opens.
    pub fn open_value<T: serde::de::DeserializeOwned>(&self, input: &CheckInput) -> Option<T> {
        let sealed = self.codec.join(&self.name, |n| input.cookie(n))?;
        self.codec.open(&self.name, &sealed)
    }

    /// Set-Cookie lines that store `value` in the session cookie for `max_age` seconds.
    pub fn save_value<T: serde::Serialize>(
        &self,
        value: &T,
        max_age: i64,
        input: &CheckInput,
    ) -> Result<Vec<String>, Error> {
        let sealed = self
            .codec
            .seal(&self.name, value)
            .map_err(|e| Error::Internal(format!("sealing session: {e}")))?;
        let parts = self
            .codec
            .split(&self.name, sealed)
            .map_err(|e| Error::Internal(format!("session too large for cookies: {e}")))?;
        let mut out: Vec<String> = parts
            .iter()
            .map(|(n, v)| self.build(n, v, &self.path, self.same_site, max_age.max(0)))
            .collect();
        for stale in self.codec.all_names(&self.name) {
            if input.cookie(&stale).is_some() && !parts.iter().any(|(n, _)| *n == stale) {
                out.push(self.expired(&stale, &self.path));
            }
        }
        Ok(out)
    }

    /// Set-Cookie lines that expire every session cookie (all chunks), present or not, so a
    /// sign-out leaves nothing behind.
    pub fn clear(&self, input: &CheckInput) -> Vec<String> {
        StoreStats::inc(&self.stats.clear);
        self.codec
            .all_names(&self.name)
            .into_iter()
            .filter(|n| *n == self.name || input.cookie(n).is_some())
            .map(|n| self.expired(&n, &self.path))
            .collect()
    }

    /// Set-Cookie lines for a new pending login, expiring the oldest ones beyond the cap (and any
    /// that no longer open) so parallel tabs work but cookies cannot pile up into a 431.
    pub fn save_pending(
        &self,
        pending: &PendingLogin,
        input: &CheckInput,
        now: i64,
    ) -> Result<Vec<String>, Error> {
        let name = self.pending_name(&pending.state);
        let sealed = self
            .codec
            .seal(&name, pending)
            .map_err(|e| Error::Internal(format!("sealing pending login: {e}")))?;
        let mut out = vec![self.build(
            &name,
            &sealed,
            &self.csrf_path,
            self.pending_same_site(),
            self.csrf_expire_secs,
        )];
        // (created, position in the request, name): browsers list older cookies first, which
        // breaks ties between logins started in the same microsecond.
        let mut live: Vec<(i64, usize, String)> = Vec::new();
        let prefix = self.pending_prefix();
        for (i, (n, v)) in input.cookies.iter().enumerate() {
            if !n.starts_with(&prefix) || *n == name {
                continue;
            }
            match self.codec.open::<PendingLogin>(n, v) {
                Some(p) if now - p.created_at < self.csrf_expire_secs => {
                    live.push((p.created_us, i, n.clone()))
                }
                _ => out.push(self.expired(n, &self.csrf_path)),
            }
        }
        // Newest first; keep max_pending - 1 besides the new one.
        live.sort_by_key(|(created, pos, _)| std::cmp::Reverse((*created, *pos)));
        for (_, _, n) in live.into_iter().skip(self.max_pending.saturating_sub(1)) {
            out.push(self.expired(&n, &self.csrf_path));
        }
        Ok(out)
    }

    /// The pending login for `state`, if its cookie is present, opens, matches `state` (compared
    /// in constant time) and has not expired; plus the Set-Cookie line that removes it.
    pub fn take_pending(
        &self,
        state: &str,
        input: &CheckInput,
        now: i64,
    ) -> (Option<PendingLogin>, Option<String>) {
        let name = self.pending_name(state);
        let Some(value) = input.cookie(&name) else {
            return (None, None);
        };
        let clear = Some(self.expired(&name, &self.csrf_path));
        let pending = self
            .codec
            .open::<PendingLogin>(&name, value)
            .filter(|p| bool::from(p.state.as_bytes().ct_eq(state.as_bytes())))
            .filter(|p| now - p.created_at < self.csrf_expire_secs && p.created_at <= now + 60);
        (pending, clear)
    }

    /// Set-Cookie line that removes the pending login for `state`, if the request carries it.
    pub fn clear_pending(&self, state: &str, input: &CheckInput) -> Option<String> {
        let name = self.pending_name(state);
        input
            .cookie(&name)
            .map(|_| self.expired(&name, &self.csrf_path))
    }

    fn pending_prefix(&self) -> String {
        format!("{}_csrf_", self.name)
    }

    fn pending_name(&self, state: &str) -> String {
        // `<name>_csrf_` and up to STATE_ID_LEN characters of the state, in one allocation.
        let mut name = String::with_capacity(self.name.len() + 6 + STATE_ID_LEN);
        name.push_str(&self.name);
        name.push_str("_csrf_");
        name.extend(
            state
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
                .take(STATE_ID_LEN),
        );
        name
    }

    /// The IdP sends the browser back with a cross-site top-level GET: a Strict cookie would not
    /// come along, so pending logins use Lax unless None was asked for.
    fn pending_same_site(&self) -> SameSite {
        match self.same_site {
            SameSite::None => SameSite::None,
            _ => SameSite::Lax,
        }
    }

    fn build(
        &self,
        name: &str,
        value: &str,
        path: &str,
        same_site: SameSite,
        max_age: i64,
    ) -> String {
        let mut c = Cookie::build((name.to_string(), value.to_string()))
            .path(path.to_string())
            .http_only(true)
            .secure(self.secure)
            .same_site(same_site)
            .max_age(CookieDuration::seconds(max_age));
        if let Some(d) = &self.domain {
            c = c.domain(d.clone());
        }
        c.build().to_string()
    }

    fn expired(&self, name: &str, path: &str) -> String {
        let mut c = Cookie::build((name.to_string(), String::new()))
            .path(path.to_string())
            .http_only(true)
            .secure(self.secure)
            .same_site(self.same_site)
            .max_age(CookieDuration::ZERO)
            .expires(cookie::time::OffsetDateTime::UNIX_EPOCH);
        if let Some(d) = &self.domain {
            c = c.domain(d.clone());
        }
        c.build().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::cookie::CookieKey;
    use http::{HeaderMap, HeaderValue, Method};
    use std::time::Duration;

    const NOW: i64 = 1_800_000_000;

    fn cfg(max_pending: usize) -> CookieConfig {
        CookieConfig {
            name: "_p".into(),
            key: CookieKey::generate(),
            previous_keys: vec![],
            expire: Duration::from_secs(3600),
            csrf_expire: Duration::from_secs(900),
            max_pending_logins: max_pending,
            domain: None,
            path: "/".into(),
            secure: true,
            same_site: SameSite::Lax,
            refresh: Duration::from_secs(60),
            refresh_interval: None,
            store_refresh_token: true,
            keep_after_token_expiry: false,
        }
    }

    #[test]
    fn loads_and_saves_are_counted_by_outcome() {
        let store = SessionCookies::new(&cfg(5), "/oauth2");
        let get = |c: &std::sync::atomic::AtomicU64| StoreStats::get(c);
        assert!(store.load(&request_with(&[]), NOW).is_none());
        let mut s = session(10);
        s.created_at = NOW;
        s.expires_at = NOW + 60;
        let cookies = store.save(&s, &request_with(&[])).expect("saves");
        assert!(store.load(&request_with(&cookies), NOW).is_some());
        assert!(store.load(&request_with(&cookies), NOW + 61).is_none());
        let tampered: Vec<String> = cookies.iter().map(|c| c.replacen("=", "=x", 1)).collect();
        assert!(store.load(&request_with(&tampered), NOW).is_none());
        store.clear(&request_with(&cookies));
        let st = &store.stats;
        assert_eq!(
            [
                get(&st.load_absent),
                get(&st.load_valid),
                get(&st.load_expired),
                get(&st.load_invalid),
                get(&st.save_ok),
                get(&st.save_error),
                get(&st.clear),
            ],
            [1, 1, 1, 1, 1, 0, 1]
        );
    }

    /// A request carrying the name=value parts of these Set-Cookie lines.
    fn request_with(set_cookies: &[String]) -> CheckInput {
        let pairs: Vec<String> = set_cookies
            .iter()
            .filter_map(|l| Cookie::parse(l.clone()).ok())
            .filter(|c| !c.value().is_empty())
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect();
        let mut h = HeaderMap::new();
        if !pairs.is_empty() {
            h.insert(
                "cookie",
                HeaderValue::from_str(&pairs.join("; ")).expect("v"),
            );
        }
        CheckInput::new(Method::GET, "app", "/", h, "r".into())
    }

    fn session(token_len: usize) -> Session {
        Session {
            id: "sid".into(),
            user: "alice".into(),
            email: "alice@example.com".into(),
            preferred_username: "alice".into(),
            groups: vec!["devs".into()],
            id_token: Some("t".repeat(token_len)),
            access_token: None,
            created_at: NOW,
            expires_at: NOW + 3600,
            claims: Default::default(),
            refresh_token: None,
            tokens_expire_at: None,
            refreshed_at: 0,
            subject: String::new(),
            sid: None,
        }
    }

    fn pending(state: &str, created_at: i64) -> PendingLogin {
        PendingLogin {
            state: state.into(),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
            return_to: "/x".into(),
            redirect_url: "https://app/oauth2/callback".into(),
            created_at,
            created_us: created_at * 1_000_000,
        }
    }

    #[test]
    fn session_round_trip_small_and_chunked() {
        let store = SessionCookies::new(&cfg(5), "/oauth2");
        for len in [10, 6000] {
            let s = session(len);
            let lines = store.save(&s, &request_with(&[])).expect("save");
            if len > 5000 {
                assert!(lines.len() > 1, "chunked: {lines:?}");
                assert!(lines.iter().all(|l| l.starts_with("_p_")));
            } else {
                assert_eq!(lines.len(), 1);
            }
            assert!(lines
                .iter()
                .all(|l| l.contains("HttpOnly") && l.contains("Secure")));
            let loaded = store.load(&request_with(&lines), NOW + 1).expect("loads");
            assert_eq!(*loaded, s);
            assert!(
                store.load(&request_with(&lines), NOW + 3600).is_none(),
                "expired"
            );
        }
    }

    #[test]
    fn shrinking_a_session_expires_leftover_chunks() {
        let store = SessionCookies::new(&cfg(5), "/oauth2");
        let big = store
            .save(&session(6000), &request_with(&[]))
            .expect("save");
        let small = store.save(&session(10), &request_with(&big)).expect("save");
        assert!(small
            .iter()
            .any(|l| l.starts_with("_p=") && !l.starts_with("_p=;")));
        assert!(small
            .iter()
            .any(|l| l.starts_with("_p_0=;") || l.starts_with("_p_0=")));
        let expired: Vec<_> = small.iter().filter(|l| l.contains("Max-Age=0")).collect();
        assert_eq!(expired.len(), big.len(), "{small:?}");
    }

    #[test]
    fn clear_expires_base_and_present_chunks() {
        let store = SessionCookies::new(&cfg(5), "/oauth2");
        let big = store
            .save(&session(6000), &request_with(&[]))
            .expect("save");
        let cleared = store.clear(&request_with(&big));
        assert_eq!(cleared.len(), big.len() + 1);
        assert!(cleared.iter().all(|l| l.contains("Max-Age=0")));
    }

    #[test]
    fn wrong_key_or_tampering_is_no_session() {
        let store = SessionCookies::new(&cfg(5), "/oauth2");
        let other = SessionCookies::new(&cfg(5), "/oauth2");
        let lines = store.save(&session(10), &request_with(&[])).expect("save");
        assert!(other.load(&request_with(&lines), NOW).is_none());
        let tampered: Vec<String> = lines.iter().map(|l| l.replacen("=", "=A", 1)).collect();
        assert!(store.load(&request_with(&tampered), NOW).is_none());
    }

    #[test]
    fn pending_logins_match_state_and_are_capped() {
        let store = SessionCookies::new(&cfg(3), "/oauth2");
        let mut jar: Vec<String> = Vec::new();
        for i in 0..5 {
            let p = pending(&format!("state{i:02}xxxxxxxxxxxx"), NOW + i);
            let lines = store
                .save_pending(&p, &request_with(&jar), NOW + i)
                .expect("pending");
            assert!(lines[0].contains("Path=/oauth2"));
            // Apply the Set-Cookie lines to the jar.
            for l in lines {
                let c = Cookie::parse(l.clone()).expect("cookie");
                jar.retain(|j| !j.starts_with(&format!("{}=", c.name())));
                if !c.value().is_empty() {
                    jar.push(l);
                }
            }
        }
        assert_eq!(jar.len(), 3, "capped at 3: {jar:?}");
        let req = request_with(&jar);
        let (found, clear) = store.take_pending("state04xxxxxxxxxxxx", &req, NOW + 5);
        assert_eq!(found.expect("newest kept").return_to, "/x");
        assert!(clear.expect("clear").contains("Max-Age=0"));
        let (gone, _) = store.take_pending("state00xxxxxxxxxxxx", &req, NOW + 5);
        assert!(gone.is_none(), "oldest dropped");
        // Same 12-char id but a different full state: refused.
        let (wrong, _) = store.take_pending("state04xxxxxYYYYYYY", &req, NOW + 5);
        assert!(wrong.is_none());
        // Expired.
        let (old, _) = store.take_pending("state04xxxxxxxxxxxx", &req, NOW + 5000);
        assert!(old.is_none());
    }
}
