//! Single flight of token refreshes: however many checks of one session arrive together, one
//! refresh runs (a spawned task, so a caller that goes away cannot cancel it half-way) and the
//! others wait for its result, at most [`Refresher::wait`]. The result is kept for
//! [`REUSE_WINDOW`] so requests still carrying the old cookie do not replay a rotated refresh
//! token. [`RefreshLock`] is the hook for a lock shared by replicas.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::Digest;
use tokio::sync::watch;

use crate::error::Error;
use crate::session::server::Ticket;
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

/// How one refresh ended; shared by every check that waited for it.
#[derive(Debug, Clone)]
pub enum Flight {
    /// New tokens (and possibly a new identity from the new ID token).
    Refreshed(Arc<Session>),
    /// Another replica refreshed the session while this one waited for the shared lock: the
    /// session as the shared store holds it (already saved there).
    Reloaded(Arc<Session>),
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
    /// Take the lock named `key` for at most `ttl`, waiting (a bounded time) while another
    /// holder has it. `Ok(true)`: taken (call `release` afterwards); `Ok(false)`: still held
    /// elsewhere when the wait ran out.
    fn acquire(&self, key: String, ttl: Duration) -> BoxFuture<'static, Result<bool, Error>>;
    /// Give the lock back.
    fn release(&self, key: String) -> BoxFuture<'static, ()>;
    /// The session as the shared store holds it now; `None` when it is gone (revoked).
    /// `ticket` is what the request carried to find and open the stored record (the Redis
    /// store seals each record with the ticket's key, which the session itself does not hold);
    /// `None` when the request carried none.
    fn reload(
        &self,
        session: Session,
        ticket: Option<Ticket>,
    ) -> BoxFuture<'static, Result<Option<Session>, Error>>;
    /// Put the freshly refreshed session into the shared store, before the lock is released:
    /// the next holder's `reload` must see it (the check that asked for the refresh saves it
    /// again afterwards, which is harmless).
    fn store(
        &self,
        session: Arc<Session>,
        ticket: Option<Ticket>,
    ) -> BoxFuture<'static, Result<(), Error>>;
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
    /// out. `ticket`: what the request carried to find the session in a shared store (passed
    /// to [`RefreshLock::reload`]).
    pub async fn single_flight<F, Fut>(
        &self,
        session: &Session,
        ticket: Option<Ticket>,
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
                        let result = led(lock, key, session, ticket, exchange).await;
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
    ticket: Option<Ticket>,
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
    let (before, refreshed_at) = (session.refresh_token.clone(), session.refreshed_at);
    let result = match lock.reload(session, ticket.clone()).await {
        Ok(None) => Flight::Ended("session_gone"),
        // Another replica refreshed it while this one waited for the lock (a new refresh
        // token, or a newer refresh with an IdP that does not rotate them).
        Ok(Some(current))
            if current.refresh_token != before || current.refreshed_at > refreshed_at =>
        {
            Flight::Reloaded(Arc::new(current))
        }
        Ok(Some(current)) => {
            let flight = exchange(current).await;
            if let Flight::Refreshed(fresh) = &flight {
                if let Err(e) = lock.store(fresh.clone(), ticket).await {
                    // The caller's own save will meet the same store (and answer 503).
                    tracing::warn!(error = %e, "storing the refreshed session under the lock failed");
                }
            }
            flight
        }
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
