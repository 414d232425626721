//! Token refresh during a check. When a session's tokens are within `cookie.refresh` of expiry
//! (or `cookie.refresh_interval` has passed), the refresh token is exchanged at the IdP's token
//! endpoint (RFC 6749 §6, through `openidconnect`), and the refreshed session goes back to the
//! browser as Set-Cookie on the allow.
//!
//! - **Single flight.** However many checks of one session arrive together, one refresh runs
//!   (a spawned task, so a caller that goes away cannot cancel it half-way); the others wait
//!   for its result, at most [`Refresher::wait`]. The result is kept for [`REUSE_WINDOW`]: a
//!   request that still carries the old cookie (sent before the browser saw the new one) gets
//!   the refreshed session instead of replaying a refresh token that the IdP rotated — which
//!   IdPs with reuse detection answer by revoking the whole grant.
//! - **Across replicas.** [`RefreshLock`] is the hook for a shared lock (e.g. Redis): with
//!   one, the leader takes it, reloads the session from the shared store and refreshes only if
//!   no other replica did meanwhile.
//! - **Hard end.** A refresh never moves `created_at` or `expires_at`: the session ends at
//!   `cookie.expire` after the login whatever the IdP says.
//! - `invalid_grant` (revoked, expired or reused refresh token) ends the session. A session
//!   whose tokens expired and that cannot be refreshed ends too, unless
//!   `cookie.keep_after_token_expiry`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use openidconnect::{
    ClaimsVerificationError, Nonce, OAuth2TokenResponse, RefreshToken, RequestTokenError,
};
use sha2::Digest;
use tokio::sync::watch;

use crate::app::App;
use crate::authz::input::CheckInput;
use crate::clock::Clock;
use crate::config::CookieConfig;
use crate::error::Error;
use crate::oidc::{chain, Claims, IdTokenClaims, Oidc, Provider, TokenResponse};
use crate::session::Session;

/// A finished refresh is reused this long by checks of the same session that carry the old
/// cookie (in flight while the browser received the new one).
pub const REUSE_WINDOW: Duration = Duration::from_secs(60);
/// A failed refresh (IdP unreachable) is not retried for this long: a down IdP is not hammered
/// by every check of every session.
const FAILURE_BACKOFF: Duration = Duration::from_secs(5);
/// Above this many remembered flights, finished ones are pruned on the next insert.
const PRUNE_ABOVE: usize = 1024;
/// A shared lock is held at most this long (it outlives a crashed holder by no more).
const LOCK_TTL: Duration = Duration::from_secs(30);

/// What the session needs at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Use it as it is.
    Fresh,
    /// Refresh its tokens first.
    Refresh,
    /// Its tokens expired and cannot be refreshed: the session is over.
    Expired,
}

/// The refresh settings (from `[cookie]`), in seconds.
#[derive(Debug, Clone, Copy)]
pub struct RefreshPolicy {
    pub margin: i64,
    pub interval: Option<i64>,
    pub enabled: bool,
    pub keep_after_expiry: bool,
}

impl RefreshPolicy {
    pub fn from_config(c: &CookieConfig) -> Self {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4);
        Self {
            margin: secs(c.refresh),
            interval: c.refresh_interval.map(secs),
            enabled: c.store_refresh_token,
            keep_after_expiry: c.keep_after_token_expiry,
        }
    }
}

/// Pure: what `session` needs at `now` under `p`.
pub fn due(session: &Session, now: i64, p: &RefreshPolicy) -> Due {
    let can_refresh = p.enabled && session.refresh_token.is_some();
    let obtained = session.tokens_obtained_at();
    let by_interval = p.interval.is_some_and(|i| now >= obtained + i);
    let by_expiry = session.tokens_expire_at.is_some_and(|exp| {
        // Tokens that outlive the session need no refresh; a margin longer than half the
        // tokens' lifetime would refresh on every check, so it is capped there.
        let lifetime = (exp - obtained).max(0);
        let margin = p.margin.min(lifetime / 2);
        exp < session.expires_at && now >= exp - margin
    });
    if can_refresh && (by_interval || by_expiry) {
        return Due::Refresh;
    }
    let expired = session.tokens_expire_at.is_some_and(|exp| now >= exp);
    if expired && !can_refresh && !p.keep_after_expiry {
        return Due::Expired;
    }
    Due::Fresh
}

/// How one refresh ended; shared by every check that waited for it.
#[derive(Debug, Clone)]
pub enum Flight {
    /// New tokens (and possibly a new identity from the new ID token).
    Refreshed(Arc<Session>),
    /// The IdP refused the refresh token (`invalid_grant` …), or the shared store no longer
    /// has the session: signed out.
    Ended(&'static str),
    /// The IdP could not be asked (transport error, 5xx, unreadable answer).
    Failed(String),
}

/// Whether this check ran the refresh or took another one's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Joined,
}

/// A boxed future, for the object-safe [`RefreshLock`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A lock shared by all replicas (e.g. Redis `SET key token NX PX ttl`), so that one refresh
/// runs per session across the fleet. Only meaningful with a server-side session store:
/// [`RefreshLock::reload`] must return the session as the shared store holds it.
pub trait RefreshLock: Send + Sync {
    /// Take the lock named `key` for at most `ttl`, waiting while another holder has it.
    /// `Ok(true)`: taken (call `release` afterwards); `Ok(false)`: still held elsewhere.
    fn acquire(&self, key: String, ttl: Duration) -> BoxFuture<'static, Result<bool, Error>>;
    /// Give the lock back.
    fn release(&self, key: String) -> BoxFuture<'static, ()>;
    /// The session as the shared store holds it now; `None` when it is gone (revoked).
    fn reload(&self, session: Session) -> BoxFuture<'static, Result<Option<Session>, Error>>;
}

/// The single-flight table: session (and refresh token) → the refresh under way or just done.
pub struct Refresher {
    flights: Mutex<HashMap<String, Slot>>,
    lock: Option<Arc<dyn RefreshLock>>,
    /// How long a check waits for a refresh (its own or another's).
    pub wait: Duration,
}

struct Slot {
    rx: watch::Receiver<Option<Flight>>,
    started: Instant,
}

impl Slot {
    /// Whether this slot can go: finished and past its reuse window, or stuck.
    fn stale(&self, wait: Duration) -> bool {
        let age = self.started.elapsed();
        match &*self.rx.borrow() {
            None => age > wait * 2,
            Some(Flight::Failed(_)) => age > FAILURE_BACKOFF,
            Some(_) => age > REUSE_WINDOW,
        }
    }
}

impl Refresher {
    /// `lock`: the cross-replica lock, when the session store is shared (`None`: one refresh
    /// per session per process).
    pub fn new(wait: Duration, lock: Option<Arc<dyn RefreshLock>>) -> Self {
        Self {
            flights: Mutex::new(HashMap::new()),
            lock,
            wait,
        }
    }

    /// Run `exchange` for `session` unless a refresh of the same session (same refresh token)
    /// is under way or just finished; either way return its result. `None` when the wait ran
    /// out.
    pub async fn single_flight<F, Fut>(
        &self,
        session: &Session,
        exchange: F,
    ) -> Option<(Flight, Role)>
    where
        F: FnOnce(Session) -> Fut + Send + 'static,
        Fut: Future<Output = Flight> + Send + 'static,
    {
        let key = flight_key(session);
        let (mut rx, role) = {
            let Ok(mut flights) = self.flights.lock() else {
                return Some((
                    Flight::Failed("refresh table poisoned".into()),
                    Role::Leader,
                ));
            };
            match flights.get(&key) {
                Some(slot) if !slot.stale(self.wait) => (slot.rx.clone(), Role::Joined),
                _ => {
                    if flights.len() > PRUNE_ABOVE {
                        let wait = self.wait;
                        flights.retain(|_, s| !s.stale(wait));
                    }
                    let (tx, rx) = watch::channel(None);
                    flights.insert(
                        key.clone(),
                        Slot {
                            rx: rx.clone(),
                            started: Instant::now(),
                        },
                    );
                    let lock = self.lock.clone();
                    let session = session.clone();
                    tokio::spawn(async move {
                        let result = led(lock, key, session, exchange).await;
                        let _ = tx.send(Some(result));
                    });
                    (rx, Role::Leader)
                }
            }
        };
        let waited = tokio::time::timeout(self.wait, rx.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(v)) => v.clone().map(|f| (f, role)),
            // The task ended without an answer (it panicked) or the wait ran out.
            _ => None,
        }
    }

    /// Flights remembered (for tests).
    pub fn len(&self) -> usize {
        self.flights.lock().map(|f| f.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The leader's part: with a shared lock, take it and refresh only what another replica has
/// not refreshed already.
async fn led<F, Fut>(
    lock: Option<Arc<dyn RefreshLock>>,
    key: String,
    session: Session,
    exchange: F,
) -> Flight
where
    F: FnOnce(Session) -> Fut,
    Fut: Future<Output = Flight>,
{
    let Some(lock) = lock else {
        return exchange(session).await;
    };
    match lock.acquire(key.clone(), LOCK_TTL).await {
        Ok(true) => {}
        Ok(false) => return Flight::Failed("refresh lock held elsewhere".into()),
        Err(e) => return Flight::Failed(e.to_string()),
    }
    let before = session.refresh_token.clone();
    let result = match lock.reload(session).await {
        Ok(None) => Flight::Ended("session_gone"),
        Ok(Some(current)) if current.refresh_token != before => {
            Flight::Refreshed(Arc::new(current))
        }
        Ok(Some(current)) => exchange(current).await,
        Err(e) => Flight::Failed(e.to_string()),
    };
    lock.release(key).await;
    result
}

/// The table key: the session and a digest of the refresh token it carries, so a later refresh
/// of the same session (with the rotated token) is a new flight.
fn flight_key(s: &Session) -> String {
    let digest = sha2::Sha256::digest(s.refresh_token.as_deref().unwrap_or("").as_bytes());
    let short = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..12]);
    format!("{}.{short}", s.id)
}

/// The lock and flight name of a session (for a [`RefreshLock`] implementation's keys).
pub fn lock_key(s: &Session) -> String {
    flight_key(s)
}

/// The session to decide with, after a refresh when one is due, and the Set-Cookie lines that
/// go back to the browser (the refreshed session, or expired cookies when it ended).
pub async fn refresh(
    app: &App,
    input: &CheckInput,
    session: Option<Session>,
    now: i64,
) -> Result<(Option<Session>, Vec<String>), Error> {
    let Some(session) = session else {
        return Ok((None, Vec::new()));
    };
    let policy = RefreshPolicy::from_config(&app.config.cookie);
    match due(&session, now, &policy) {
        Due::Fresh => return Ok((Some(session), Vec::new())),
        Due::Expired => {
            app.metrics.refresh("expired");
            tracing::info!(request_id = %input.request_id, session_id = %session.id, "session ended: tokens expired and cannot be refreshed");
            return Ok((None, app.sessions.clear(input)));
        }
        Due::Refresh => {}
    }
    let ctx = Ctx::new(app);
    let flight = app
        .refresher
        .single_flight(&session, move |s| ctx.exchange(s))
        .await;
    let failure = match flight {
        Some((Flight::Refreshed(fresh), role)) => {
            app.metrics.refresh(match role {
                Role::Leader => "refreshed",
                Role::Joined => "joined",
            });
            if role == Role::Leader {
                tracing::info!(request_id = %input.request_id, session_id = %fresh.id, "session refreshed");
            }
            let fresh = Session::clone(&fresh);
            let cookies = app.sessions.save_at(&fresh, input, now)?;
            return Ok((Some(fresh), cookies));
        }
        Some((Flight::Ended(why), role)) => {
            if role == Role::Leader {
                app.metrics.refresh("ended");
                tracing::info!(request_id = %input.request_id, session_id = %session.id, reason = why, "session ended: the refresh token was refused");
            } else {
                app.metrics.refresh("joined");
            }
            return Ok((None, app.sessions.clear(input)));
        }
        Some((Flight::Failed(e), role)) => {
            app.metrics.refresh(match role {
                Role::Leader => "failed",
                Role::Joined => "joined",
            });
            e
        }
        None => {
            app.metrics.refresh("timeout");
            "timed out waiting for the refresh".to_string()
        }
    };
    // The IdP could not refresh: tokens that are still valid (or a session kept past them)
    // carry on, and the next check after the back-off tries again.
    let still_valid = session.tokens_expire_at.is_none_or(|exp| now < exp);
    if still_valid || policy.keep_after_expiry {
        tracing::warn!(request_id = %input.request_id, session_id = %session.id, error = %failure, "token refresh failed; session kept");
        Ok((Some(session), Vec::new()))
    } else {
        Err(Error::Idp(format!("token refresh: {failure}")))
    }
}

/// What a refresh needs, owned (it runs in its own task).
struct Ctx {
    oidc: Arc<Oidc>,
    clock: Clock,
    claim_names: Vec<String>,
    pass_access_token: bool,
}

impl Ctx {
    fn new(app: &App) -> Self {
        Self {
            oidc: app.oidc.clone(),
            clock: app.clock.clone(),
            claim_names: app.policy.claim_names.clone(),
            pass_access_token: app.config.headers.pass_access_token,
        }
    }

    /// The refresh-token grant, then the new identity from a new ID token (and userinfo when
    /// the ID token lacks claims, as at login).
    async fn exchange(self, session: Session) -> Flight {
        let provider = match self.oidc.provider() {
            Ok(p) => p,
            Err(e) => return Flight::Failed(e.to_string()),
        };
        let Some(refresh_token) = session.refresh_token.clone() else {
            return Flight::Ended("no_refresh_token");
        };
        let refresh_token = RefreshToken::new(refresh_token);
        let request = match provider.client.exchange_refresh_token(&refresh_token) {
            Ok(r) => r,
            Err(e) => return Flight::Failed(format!("no token endpoint: {e}")),
        };
        let started = Instant::now();
        let result = request.request_async(&self.oidc.http).await;
        let status = match &result {
            Ok(_) => "ok",
            Err(RequestTokenError::ServerResponse(_)) => "rejected",
            Err(_) => "error",
        };
        self.oidc.metrics.idp("refresh", status, started.elapsed());
        let token = match result {
            Ok(t) => t,
            Err(RequestTokenError::ServerResponse(r)) => {
                return match r.error().to_string().as_str() {
                    // The grant is gone (revoked, expired, reused) or the client may not use
                    // it: only a new login helps.
                    "invalid_grant" => Flight::Ended("invalid_grant"),
                    "unauthorized_client" => Flight::Ended("unauthorized_client"),
                    "unsupported_grant_type" => Flight::Ended("unsupported_grant_type"),
                    "invalid_scope" => Flight::Ended("invalid_scope"),
                    other => Flight::Failed(format!("token endpoint answered {other}")),
                };
            }
            Err(e) => return Flight::Failed(format!("refresh request: {}", chain(&e))),
        };
        match self.updated(&provider, session, &token).await {
            Ok(s) => Flight::Refreshed(Arc::new(s)),
            Err(f) => f,
        }
    }

    async fn updated(
        &self,
        provider: &Provider,
        mut s: Session,
        token: &TokenResponse,
    ) -> Result<Session, Flight> {
        let now = self.clock.now();
        let mut id_exp = None;
        if let Some(id_token) = token.extra_fields().id_token() {
            let claims = self.verify(provider, id_token).await.map_err(|e| {
                // A token the IdP just issued that does not verify: treat as an IdP fault.
                Flight::Failed(format!("refreshed id token rejected: {e}"))
            })?;
            id_exp = Some(claims.expiration().timestamp());
            self.update_identity(provider, &mut s, token, &claims)
                .await?;
            s.id_token = Some(id_token.to_string());
        }
        if let Some(rt) = token.refresh_token() {
            s.refresh_token = Some(rt.secret().clone());
        }
        if self.pass_access_token {
            s.access_token = Some(token.access_token().secret().clone());
        }
        s.tokens_expire_at = tokens_expire_at(now, token.expires_in(), id_exp);
        s.refreshed_at = now;
        Ok(s)
    }

    /// OIDC Core §12.2: a refreshed ID token is for the same user; its claims replace the
    /// session's (groups may have changed).
    async fn update_identity(
        &self,
        provider: &Provider,
        s: &mut Session,
        token: &TokenResponse,
        claims: &IdTokenClaims,
    ) -> Result<(), Flight> {
        let cfg = &self.oidc.cfg;
        let mut view = Claims {
            id_token: claims,
            userinfo: None,
        };
        let missing = view.text(&cfg.email_claim).is_none()
            || view.list(&cfg.groups_claim).is_empty()
            || view.text(&cfg.user_claim).is_none();
        let userinfo = if missing {
            crate::oidc::callback::fetch_userinfo_with(&self.oidc, provider, token, claims)
                .await
                .map_err(|e| Flight::Failed(e.to_string()))?
        } else {
            None
        };
        view.userinfo = userinfo.as_ref();
        let user = view.text(&cfg.user_claim).unwrap_or_default();
        if user != s.user {
            return Err(Flight::Ended("identity_changed"));
        }
        s.email = view.text(&cfg.email_claim).unwrap_or_default();
        s.preferred_username = view.text("preferred_username").unwrap_or_default();
        s.groups = view.list(&cfg.groups_claim);
        s.claims = self
            .claim_names
            .iter()
            .filter_map(|n| view.json(n).map(|v| (n.clone(), v)))
            .collect();
        Ok(())
    }

    /// Verify a refreshed ID token (signature, iss, aud, exp). Its nonce, if any, is the
    /// login's, which the session does not keep; the signature binds it to this IdP anyway.
    /// Keys are re-fetched once on a signature failure.
    async fn verify(
        &self,
        provider: &Provider,
        id_token: &crate::oidc::IdToken,
    ) -> Result<IdTokenClaims, ClaimsVerificationError> {
        let any_nonce = |_: Option<&Nonce>| Ok(());
        let clock = self.clock.clone();
        let verifier = provider
            .client
            .id_token_verifier()
            .set_time_fn(move || clock.now_utc());
        match id_token.claims(&verifier, any_nonce) {
            Ok(c) => Ok(c.clone()),
            Err(ClaimsVerificationError::SignatureVerification(e)) => {
                if self.oidc.refresh_keys().await {
                    if let Ok(fresh) = self.oidc.provider() {
                        let clock = self.clock.clone();
                        let verifier = fresh
                            .client
                            .id_token_verifier()
                            .set_time_fn(move || clock.now_utc());
                        return id_token.claims(&verifier, any_nonce).cloned();
                    }
                }
                Err(ClaimsVerificationError::SignatureVerification(e))
            }
            Err(e) => Err(e),
        }
    }
}

/// When the tokens expire: the access token's `expires_in`, else the ID token's `exp`.
pub fn tokens_expire_at(
    now: i64,
    expires_in: Option<Duration>,
    id_exp: Option<i64>,
) -> Option<i64> {
    expires_in
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .map(|s| now.saturating_add(s))
        .or(id_exp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const NOW: i64 = 1_800_000_000;

    fn policy() -> RefreshPolicy {
        RefreshPolicy {
            margin: 60,
            interval: None,
            enabled: true,
            keep_after_expiry: false,
        }
    }

    /// Logged in at NOW, session for 8h, tokens for 5 min, with a refresh token.
    fn session() -> Session {
        Session {
            id: "sid".into(),
            user: "alice".into(),
            created_at: NOW,
            expires_at: NOW + 8 * 3600,
            refresh_token: Some("rt-1".into()),
            tokens_expire_at: Some(NOW + 300),
            ..Session::anonymous()
        }
    }

    #[test]
    fn refresh_within_the_margin_of_expiry() {
        let s = session();
        let p = policy();
        assert_eq!(due(&s, NOW, &p), Due::Fresh);
        assert_eq!(due(&s, NOW + 239, &p), Due::Fresh);
        assert_eq!(due(&s, NOW + 240, &p), Due::Refresh, "60 s before expiry");
        assert_eq!(due(&s, NOW + 300, &p), Due::Refresh, "at expiry");
        assert_eq!(due(&s, NOW + 4000, &p), Due::Refresh, "long after expiry");
    }

    #[test]
    fn interval_refreshes_even_long_lived_tokens() {
        let mut s = session();
        s.tokens_expire_at = Some(NOW + 24 * 3600);
        let mut p = policy();
        assert_eq!(due(&s, NOW + 3600, &p), Due::Fresh);
        p.interval = Some(1800);
        assert_eq!(due(&s, NOW + 1799, &p), Due::Fresh);
        assert_eq!(due(&s, NOW + 1800, &p), Due::Refresh);
        // Counted from the last refresh, not from the login.
        s.refreshed_at = NOW + 1800;
        assert_eq!(due(&s, NOW + 1900, &p), Due::Fresh);
        assert_eq!(due(&s, NOW + 3600, &p), Due::Refresh);
    }

    #[test]
    fn margin_is_capped_at_half_the_token_lifetime() {
        let mut s = session();
        s.tokens_expire_at = Some(NOW + 60);
        let mut p = policy();
        p.margin = 3600; // longer than the tokens live: would refresh on every check
        assert_eq!(due(&s, NOW + 29, &p), Due::Fresh);
        assert_eq!(due(&s, NOW + 30, &p), Due::Refresh);
    }

    #[test]
    fn tokens_that_outlive_the_session_are_not_refreshed() {
        let mut s = session();
        s.expires_at = NOW + 200; // the session ends before the tokens do
        assert_eq!(due(&s, NOW + 250, &policy()), Due::Fresh);
    }

    #[test]
    fn expired_tokens_without_refresh_token_end_the_session() {
        let mut s = session();
        s.refresh_token = None;
        let mut p = policy();
        assert_eq!(due(&s, NOW + 299, &p), Due::Fresh);
        assert_eq!(due(&s, NOW + 300, &p), Due::Expired);
        p.keep_after_expiry = true;
        assert_eq!(due(&s, NOW + 300, &p), Due::Fresh, "configured to keep");
        // Refresh turned off: the stored refresh token is not used.
        let s = session();
        let mut p = policy();
        p.enabled = false;
        assert_eq!(due(&s, NOW + 300, &p), Due::Expired);
        // Unknown token expiry: nothing to go by.
        let mut s = session();
        s.refresh_token = None;
        s.tokens_expire_at = None;
        assert_eq!(due(&s, NOW + 7 * 3600, &policy()), Due::Fresh);
    }

    #[test]
    fn token_expiry_prefers_expires_in() {
        assert_eq!(
            tokens_expire_at(NOW, Some(Duration::from_secs(60)), Some(NOW + 3600)),
            Some(NOW + 60)
        );
        assert_eq!(
            tokens_expire_at(NOW, None, Some(NOW + 3600)),
            Some(NOW + 3600)
        );
        assert_eq!(tokens_expire_at(NOW, None, None), None);
    }

    /// What the refresh fields cost in the cookie: an opaque refresh token (oidc-provider,
    /// Okta: 43 characters) plus the expiry and refresh time.
    #[test]
    fn refresh_fields_cost_little_cookie() {
        use crate::session::cookie::{CookieCodec, CookieKey};
        let codec = CookieCodec::new(&CookieKey::generate(), &[]);
        let mut s = session();
        s.email = "alice@example.com".into();
        s.id_token = Some("x".repeat(900));
        let plain = Session {
            refresh_token: None,
            tokens_expire_at: None,
            ..s.clone()
        };
        s.refresh_token = Some("r".repeat(43));
        s.refreshed_at = NOW + 250;
        let len = |s: &Session| codec.seal("_portcullis", s).expect("seal").len();
        let extra = len(&s) - len(&plain);
        assert!(extra <= 120, "refresh fields add {extra} bytes");
    }

    fn refreshed(s: &Session, rt: &str) -> Flight {
        let mut n = s.clone();
        n.refresh_token = Some(rt.into());
        n.tokens_expire_at = s.tokens_expire_at.map(|t| t + 300);
        Flight::Refreshed(Arc::new(n))
    }

    #[tokio::test]
    async fn fifty_concurrent_checks_make_one_refresh() {
        let r = Arc::new(Refresher::new(Duration::from_secs(5), None));
        let calls = Arc::new(AtomicUsize::new(0));
        let s = session();
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (r, calls, s) = (r.clone(), calls.clone(), s.clone());
            tasks.push(tokio::spawn(async move {
                r.single_flight(&s, move |s| async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    refreshed(&s, "rt-2")
                })
                .await
            }));
        }
        let mut leaders = 0;
        for t in tasks {
            let (flight, role) = t.await.expect("join").expect("answered");
            assert!(
                matches!(flight, Flight::Refreshed(ref n) if n.refresh_token.as_deref() == Some("rt-2"))
            );
            leaders += usize::from(role == Role::Leader);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        // A late check with the old cookie reuses the result instead of replaying rt-1.
        let calls2 = calls.clone();
        let (late, role) = r
            .single_flight(&s, move |s| async move {
                calls2.fetch_add(1, Ordering::SeqCst);
                refreshed(&s, "rt-3")
            })
            .await
            .expect("answered");
        assert_eq!(role, Role::Joined);
        assert!(
            matches!(late, Flight::Refreshed(ref n) if n.refresh_token.as_deref() == Some("rt-2"))
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // The refreshed session's next refresh is a new flight.
        let mut next = s.clone();
        next.refresh_token = Some("rt-2".into());
        let (f, role) = r
            .single_flight(&next, |s| async move { refreshed(&s, "rt-3") })
            .await
            .expect("answered");
        assert_eq!(role, Role::Leader);
        assert!(
            matches!(f, Flight::Refreshed(ref n) if n.refresh_token.as_deref() == Some("rt-3"))
        );
    }

    #[tokio::test]
    async fn waiting_is_bounded() {
        let r = Refresher::new(Duration::from_millis(50), None);
        let answer = r
            .single_flight(&session(), |s| async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                refreshed(&s, "never")
            })
            .await;
        assert!(answer.is_none());
    }

    /// Two replicas (two `Refresher`s) sharing a lock and a store: one refresh between them.
    #[tokio::test]
    async fn a_shared_lock_makes_one_refresh_across_replicas() {
        #[derive(Default)]
        struct Shared {
            held: Mutex<bool>,
            store: Mutex<HashMap<String, Session>>,
        }
        struct Lock(Arc<Shared>);
        impl RefreshLock for Lock {
            fn acquire(
                &self,
                _key: String,
                _ttl: Duration,
            ) -> BoxFuture<'static, Result<bool, Error>> {
                let shared = self.0.clone();
                Box::pin(async move {
                    loop {
                        {
                            let mut held = shared.held.lock().expect("held");
                            if !*held {
                                *held = true;
                                return Ok(true);
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            }
            fn release(&self, _key: String) -> BoxFuture<'static, ()> {
                let shared = self.0.clone();
                Box::pin(async move {
                    *shared.held.lock().expect("held") = false;
                })
            }
            fn reload(
                &self,
                session: Session,
            ) -> BoxFuture<'static, Result<Option<Session>, Error>> {
                let shared = self.0.clone();
                Box::pin(async move {
                    Ok(shared
                        .store
                        .lock()
                        .expect("store")
                        .get(&session.id)
                        .cloned())
                })
            }
        }
        let shared = Arc::new(Shared::default());
        let s = session();
        shared
            .store
            .lock()
            .expect("store")
            .insert(s.id.clone(), s.clone());
        let a = Refresher::new(Duration::from_secs(5), Some(Arc::new(Lock(shared.clone()))));
        let b = Refresher::new(Duration::from_secs(5), Some(Arc::new(Lock(shared.clone()))));
        let calls = Arc::new(AtomicUsize::new(0));
        let exchange = |calls: Arc<AtomicUsize>, store: Arc<Shared>| {
            move |s: Session| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let f = refreshed(&s, "rt-2");
                if let Flight::Refreshed(n) = &f {
                    store
                        .store
                        .lock()
                        .expect("store")
                        .insert(n.id.clone(), Session::clone(n));
                }
                f
            }
        };
        let (fa, fb) = tokio::join!(
            a.single_flight(&s, exchange(calls.clone(), shared.clone())),
            b.single_flight(&s, exchange(calls.clone(), shared.clone())),
        );
        for (f, _) in [fa.expect("a"), fb.expect("b")] {
            assert!(
                matches!(f, Flight::Refreshed(ref n) if n.refresh_token.as_deref() == Some("rt-2"))
            );
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the second replica reloaded instead"
        );
    }
}
