//! The Redis store's [`RefreshLock`]: one token refresh per session across every replica.
//!
//! The leader of a refresh flight on each replica takes `lock:refresh:<digest of the flight
//! key>` with `SET NX PX` (polling with short sleeps while another replica holds it, for at
//! most the refresher's wait), reloads the session record with the request's ticket, and
//! refreshes only when no other replica did meanwhile; the refreshed record is written back
//! before the lock is released, so the next holder's reload sees it. Release is compare-and-delete, so a lock
//! that outlived its TTL and was retaken is never released by the old holder.
//!
//! Used with `session.store = "redis"` only: with cookie sessions there is no shared record to
//! reload, so a second replica would have nothing better than the refresh token it holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::error::Error;
use crate::oidc::single_flight::{BoxFuture, RefreshLock};
use crate::session::redis::LockGuard;
use crate::session::server::{ServerSessions, Ticket};
use crate::session::Session;

/// Pause between two attempts to take a lock another replica holds.
const POLL: Duration = Duration::from_millis(25);

/// A [`RefreshLock`] on the Redis session store.
pub struct RedisRefreshLock {
    server: Arc<ServerSessions>,
    clock: Clock,
    /// The longest `acquire` waits for another replica's refresh.
    wait: Duration,
    /// Guards of the locks this process holds, by flight key.
    held: Arc<Mutex<HashMap<String, LockGuard>>>,
}

impl RedisRefreshLock {
    pub fn new(server: Arc<ServerSessions>, clock: Clock, wait: Duration) -> Self {
        Self {
            server,
            clock,
            wait,
            held: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// The lock's name: the flight key (session id + refresh token digest) hashed again, so
/// neither appears in Redis key names.
fn lock_name(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!(
        "refresh:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

impl RefreshLock for RedisRefreshLock {
    fn acquire(&self, key: String, ttl: Duration) -> BoxFuture<'static, Result<bool, Error>> {
        let (server, held, wait) = (self.server.clone(), self.held.clone(), self.wait);
        Box::pin(async move {
            let name = lock_name(&key);
            let deadline = Instant::now() + wait;
            loop {
                if let Some(guard) = server.redis.try_lock(&name, ttl).await? {
                    if let Ok(mut h) = held.lock() {
                        h.insert(key, guard);
                    }
                    return Ok(true);
                }
                if Instant::now() + POLL > deadline {
                    return Ok(false);
                }
                tokio::time::sleep(POLL).await;
            }
        })
    }

    fn release(&self, key: String) -> BoxFuture<'static, ()> {
        let (server, held) = (self.server.clone(), self.held.clone());
        Box::pin(async move {
            let guard = held.lock().ok().and_then(|mut h| h.remove(&key));
            if let Some(g) = guard {
                // Failing to release only delays another replica until the TTL passes.
                if let Err(e) = server.redis.unlock(&g).await {
                    tracing::warn!(error = %e, "releasing the refresh lock failed");
                }
            }
        })
    }

    fn reload(
        &self,
        session: Session,
        ticket: Option<Ticket>,
    ) -> BoxFuture<'static, Result<Option<Session>, Error>> {
        let (server, now) = (self.server.clone(), self.clock.now());
        Box::pin(async move {
            match ticket {
                Some(t) if t.id == session.id => server.load(&t, now).await,
                // No ticket for this session (not a Redis-store request): nothing shared to
                // reload, refresh what we have.
                _ => Ok(Some(session)),
            }
        })
    }

    fn store(
        &self,
        session: Arc<Session>,
        ticket: Option<Ticket>,
    ) -> BoxFuture<'static, Result<(), Error>> {
        let (server, now) = (self.server.clone(), self.clock.now());
        Box::pin(async move {
            match ticket {
                Some(t) if t.id == session.id => {
                    let t = Ticket {
                        exp: session.expires_at,
                        ..t
                    };
                    server.save(&t, &session, now).await
                }
                _ => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names_hide_the_session_and_differ_per_refresh_token() {
        let a = lock_name("session-id.AAAA");
        assert!(
            a.starts_with("refresh:") && !a.contains("session-id"),
            "{a}"
        );
        assert_ne!(a, lock_name("session-id.BBBB"));
        assert_eq!(a, lock_name("session-id.AAAA"));
    }
}
