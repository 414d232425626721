//! The session store every route uses: `load`, `save` (Set-Cookie lines), `clear`, `revoke`.
//! Cookie store: the session lives in the cookie (and, when Redis is configured, revocations in
//! a Redis deny-list). Redis store: the cookie holds a ticket, the session lives in Redis
//! (`server.rs`). Redis failing is an `Err` (503), never "no session" and never an allow.

use std::sync::Arc;
use std::time::Duration;

use crate::authz::input::CheckInput;
use crate::clock::Clock;
use crate::config::{Config, StoreKind};
use crate::error::Error;
use crate::oidc::single_flight::RefreshLock;
use crate::session::redis::{LockGuard, Redis};
use crate::session::refresh_lock::RedisRefreshLock;
use crate::session::server::{ServerSessions, Target, Ticket};
use crate::session::{PendingLogin, Session, SessionCookies};

/// What a revocation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// Redis store: this many sessions were deleted.
    Deleted(u64),
    /// Cookie store: the target is on the deny-list from now on.
    DenyListed,
}

/// Cookie sessions, optionally backed by Redis.
pub struct Sessions {
    cookies: SessionCookies,
    store: StoreKind,
    server: Option<Arc<ServerSessions>>,
    clock: Clock,
}

impl Sessions {
    /// Build from the configuration (no I/O: Redis connects on first use).
    pub fn new(config: &Config, clock: Clock) -> Result<Self, String> {
        let cookies = SessionCookies::new(&config.cookie, &config.server.proxy_prefix);
        let server = match &config.session.redis {
            Some(r) => Some(Arc::new(ServerSessions::new(
                Redis::new(r)?,
                cookies.expire_secs(),
            ))),
            None => None,
        };
        Ok(Self {
            cookies,
            store: config.session.store,
            server,
            clock,
        })
    }

    /// The cookie layer (the cookie store's sessions and every store's pending logins).
    pub fn cookies(&self) -> &SessionCookies {
        &self.cookies
    }

    pub fn store(&self) -> StoreKind {
        self.store
    }

    /// Session lifetime in seconds.
    pub fn expire_secs(&self) -> i64 {
        self.cookies.expire_secs()
    }

    /// The Redis connection, when one is configured (readiness, locks).
    pub fn redis(&self) -> Option<&Redis> {
        self.server.as_ref().map(|s| &s.redis)
    }

    /// The lock that makes a token refresh happen once across replicas: only with the Redis
    /// store, where the refreshed session is shared and a waiting replica can reload it. Cookie
    /// sessions (with or without the deny-list) have no shared record: `None`.
    pub fn refresh_lock(&self, wait: Duration) -> Option<Arc<dyn RefreshLock>> {
        match (self.store, &self.server) {
            (StoreKind::Redis, Some(server)) => Some(Arc::new(RedisRefreshLock::new(
                server.clone(),
                self.clock.clone(),
                wait,
            ))),
            _ => None,
        }
    }

    /// The Redis store's ticket in this request (what finds and opens its record), if any.
    pub fn ticket(&self, input: &CheckInput) -> Option<Ticket> {
        match (self.store, &self.server) {
            (StoreKind::Redis, Some(_)) => self.cookies.open_value::<Ticket>(input),
            _ => None,
        }
    }

    /// Whether revocations reach every replica (Redis store or deny-list).
    pub fn can_revoke(&self) -> bool {
        self.server.is_some()
    }

    /// The valid session in this request, if any. `Err` when Redis is needed and fails.
    pub async fn load(&self, input: &CheckInput, now: i64) -> Result<Option<Arc<Session>>, Error> {
        match (self.store, &self.server) {
            (StoreKind::Redis, Some(server)) => {
                let Some(ticket) = self.cookies.open_value::<Ticket>(input) else {
                    return Ok(None);
                };
                // Boxed, as the deny-list lookup below: Redis futures are kilobytes, and the
                // cookie store's checks would otherwise carry (and copy) them on every request.
                Ok(Box::pin(server.load(&ticket, now)).await?.map(Arc::new))
            }
            (_, server) => {
                let Some(session) = self.cookies.load(input, now) else {
                    return Ok(None);
                };
                match server {
                    Some(s) if Box::pin(s.denied(&session)).await? => Ok(None),
                    _ => Ok(Some(session)),
                }
            }
        }
    }

    /// Store `session` and return the Set-Cookie lines that carry it (the session itself, or
    /// its ticket). A refresh that saves the same session id keeps the ticket's key, so other
    /// requests holding the old cookie keep working.
    pub async fn save(&self, session: &Session, input: &CheckInput) -> Result<Vec<String>, Error> {
        match (self.store, &self.server) {
            (StoreKind::Redis, Some(server)) => {
                let ticket = self
                    .cookies
                    .open_value::<Ticket>(input)
                    .filter(|t| t.id == session.id)
                    .map(|t| Ticket {
                        exp: session.expires_at,
                        ..t
                    })
                    .unwrap_or_else(|| Ticket::new(session));
                let now = self.clock.now();
                server.save(&ticket, session, now).await?;
                // What is left of the session: a refresh never extends the login's lifetime.
                self.cookies
                    .save_value(&ticket, session.expires_at - now, input)
            }
            _ => self.cookies.save_at(session, input, self.clock.now()),
        }
    }

    /// Set-Cookie lines that expire every session cookie.
    pub fn clear(&self, input: &CheckInput) -> Vec<String> {
        self.cookies.clear(input)
    }

    /// End `target`'s sessions on every replica. `Ok(None)`: not possible here (cookie store
    /// without Redis: only the browser's own cookie can be cleared).
    pub async fn revoke(&self, target: &Target) -> Result<Option<Revoked>, Error> {
        let Some(server) = &self.server else {
            return Ok(None);
        };
        match self.store {
            StoreKind::Redis => Ok(Some(Revoked::Deleted(server.delete(target).await?))),
            StoreKind::Cookie => {
                server.deny(target, self.clock.now()).await?;
                Ok(Some(Revoked::DenyListed))
            }
        }
    }

    /// Back-channel logout replay cache: `false` when this `jti` was seen before.
    pub async fn first_use(&self, issuer: &str, jti: &str, ttl: Duration) -> Result<bool, Error> {
        match &self.server {
            Some(s) => s.first_use(issuer, jti, ttl).await,
            None => Err(Error::Internal(
                "back-channel logout needs session.redis".into(),
            )),
        }
    }

    /// A cross-replica lock (`SET NX PX` + compare-and-delete release) when Redis is
    /// configured: `Ok(None)` means someone else holds it. Without Redis this is an `Err`;
    /// callers fall back to a process-local lock.
    pub async fn try_lock(&self, name: &str, ttl: Duration) -> Result<Option<LockGuard>, Error> {
        match self.redis() {
            Some(r) => r.try_lock(name, ttl).await,
            None => Err(Error::Internal("no redis configured for locks".into())),
        }
    }

    /// Release a lock taken with [`Sessions::try_lock`].
    pub async fn unlock(&self, guard: &LockGuard) -> Result<bool, Error> {
        match self.redis() {
            Some(r) => r.unlock(guard).await,
            None => Ok(false),
        }
    }

    // Pending logins always live in cookies.

    pub fn save_pending(
        &self,
        pending: &PendingLogin,
        input: &CheckInput,
        now: i64,
    ) -> Result<Vec<String>, Error> {
        self.cookies.save_pending(pending, input, now)
    }

    pub fn take_pending(
        &self,
        state: &str,
        input: &CheckInput,
        now: i64,
    ) -> (Option<PendingLogin>, Option<String>) {
        self.cookies.take_pending(state, input, now)
    }

    pub fn clear_pending(&self, state: &str, input: &CheckInput) -> Option<String> {
        self.cookies.clear_pending(state, input)
    }
}
