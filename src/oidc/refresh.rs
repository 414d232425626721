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
//! - **Across replicas.** [`RefreshLock`] is the hook for a shared lock; the Redis store
//!   plugs one in (`session::refresh_lock`): the leader takes it, reloads the session from
//!   Redis with the request's ticket and refreshes only if no other replica did meanwhile.
//!   Cookie sessions have no shared record to reload: one refresh per process.
//! - **Hard end.** A refresh never moves `created_at` or `expires_at`: the session ends at
//!   `cookie.expire` after the login whatever the IdP says.
//! - `invalid_grant` (revoked, expired or reused refresh token) ends the session. A session
//!   whose tokens expired and that cannot be refreshed ends too, unless
//!   `cookie.keep_after_token_expiry`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::{
    ClaimsVerificationError, Nonce, OAuth2TokenResponse, RefreshToken, RequestTokenError,
};

use crate::app::App;
use crate::authz::input::CheckInput;
use crate::clock::Clock;
use crate::config::CookieConfig;
use crate::error::Error;
use crate::oidc::{chain, Claims, IdTokenClaims, Oidc, Provider, TokenResponse};
use crate::session::Session;

pub use super::single_flight::{
    lock_key, BoxFuture, Flight, RefreshLock, Refresher, Role, REUSE_WINDOW,
};

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

/// The session to decide with, after a refresh when one is due, and the Set-Cookie lines that
/// go back to the browser (the refreshed session, or expired cookies when it ended).
pub async fn refresh(
    app: &App,
    input: &CheckInput,
    session: Option<Arc<Session>>,
    now: i64,
) -> Result<(Option<Arc<Session>>, Vec<String>), Error> {
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
    // Boxed: a refresh (single flight, the IdP's token endpoint, saving to the store) is a
    // future of kilobytes, which would otherwise be part of every check's future and be copied
    // with it on every request, refresh or not (bench/README.md, profile).
    Box::pin(refresh_due(app, input, session, now, policy)).await
}

/// [`refresh`] once one is due.
async fn refresh_due(
    app: &App,
    input: &CheckInput,
    session: Arc<Session>,
    now: i64,
    policy: RefreshPolicy,
) -> Result<(Option<Arc<Session>>, Vec<String>), Error> {
    let ctx = Ctx::new(app);
    let ticket = app.sessions.ticket(input);
    let flight = app
        .refresher
        .single_flight(&session, ticket, move |s| ctx.exchange(s))
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
            let cookies = app.sessions.save(&fresh, input).await?;
            return Ok((Some(fresh), cookies));
        }
        Some((Flight::Reloaded(stored), role)) => {
            // Another replica refreshed it and saved it in the shared store, which the
            // browser's ticket already opens: nothing to save, no cookie to send.
            app.metrics.refresh(match role {
                Role::Leader => "reloaded",
                Role::Joined => "joined",
            });
            if role == Role::Leader {
                tracing::info!(request_id = %input.request_id, session_id = %stored.id, "session refreshed by another replica; reloaded");
            }
            return Ok((Some(stored), Vec::new()));
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

/// When the tokens expire: the earlier of the access token's `expires_in` and the ID token's
/// `exp` (the ID token is what `authorization: Bearer` forwards), whichever the IdP gave.
pub fn tokens_expire_at(
    now: i64,
    expires_in: Option<Duration>,
    id_exp: Option<i64>,
) -> Option<i64> {
    let access = expires_in
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .map(|s| now.saturating_add(s));
    match (access, id_exp) {
        (Some(a), Some(i)) => Some(a.min(i)),
        (a, i) => a.or(i),
    }
}

#[cfg(test)]
#[path = "refresh_tests.rs"]
mod tests;
