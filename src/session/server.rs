//! Server-side session records and revocation in Redis.
//!
//! Redis store: the cookie holds a [`Ticket`] (session id + a per-session AES-256 key), sealed
//! with the cookie secret like any cookie. Redis holds `s:<id>`: the session sealed with the
//! ticket's key by the same AES-GCM codec, so Redis alone cannot read it; TTL = remaining
//! lifetime. `sub:<sub>` and `sid:<sid>` are sets of session ids, for revocation by subject and
//! back-channel logout.
//!
//! Cookie store with Redis configured: the deny-list. `deny:id:<id>`, `deny:sub:<sub>` and
//! `deny:sid:<sid>` hold the revocation time; a cookie session created at or before it is
//! refused. Entries live as long as a session can (`cookie.expire`).
//!
//! Key names: `<session.redis.key_prefix><kind>:<value>`. Values that come from an IdP (sub,
//! sid) are hashed so any byte sequence makes a short, safe key.

use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::session::cookie::{CookieCodec, CookieKey};
use crate::session::redis::Redis;
use crate::session::Session;

/// What the cookie carries with the Redis store.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The session id (the Redis key).
    pub id: String,
    /// The per-session key (base64) that opens the record.
    pub key: String,
    /// The session's expiry: a ticket past it is not even looked up.
    pub exp: i64,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("id", &self.id)
            .field("exp", &self.exp)
            .finish_non_exhaustive()
    }
}

impl Ticket {
    /// A ticket for a new session record.
    pub fn new(session: &Session) -> Self {
        Self {
            id: session.id.clone(),
            key: CookieKey::generate().to_base64(),
            exp: session.expires_at,
        }
    }

    fn codec(&self) -> Option<CookieCodec> {
        CookieKey::from_base64(&self.key)
            .ok()
            .map(|k| CookieCodec::new(&k, &[]))
    }
}

/// What a revocation is aimed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    SessionId(String),
    Subject(String),
    /// An IdP session (`sid` of the ID token / logout token).
    IdpSession(String),
}

/// Redis-side session operations.
pub struct ServerSessions {
    pub redis: Redis,
    /// How long index and deny-list entries live: the longest a session can.
    max_life: i64,
}

/// The codec's associated data names the record, so a record cannot be moved to another id.
fn record_name(id: &str) -> String {
    format!("session:{id}")
}

fn hashed(v: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes()))
}

impl ServerSessions {
    pub fn new(redis: Redis, max_life_secs: i64) -> Self {
        Self {
            redis,
            max_life: max_life_secs.max(60),
        }
    }

    fn record_key(&self, id: &str) -> String {
        self.redis.key(&format!("s:{}", hashed(id)))
    }

    fn index_key(&self, t: &Target) -> String {
        match t {
            Target::SessionId(id) => self.record_key(id),
            Target::Subject(s) => self.redis.key(&format!("sub:{}", hashed(s))),
            Target::IdpSession(s) => self.redis.key(&format!("sid:{}", hashed(s))),
        }
    }

    fn deny_key(&self, t: &Target) -> String {
        match t {
            Target::SessionId(id) => self.redis.key(&format!("deny:id:{}", hashed(id))),
            Target::Subject(s) => self.redis.key(&format!("deny:sub:{}", hashed(s))),
            Target::IdpSession(s) => self.redis.key(&format!("deny:sid:{}", hashed(s))),
        }
    }

    /// The session a ticket names, if its record exists, opens with the ticket's key, and is
    /// still valid at `now`. `Err` only when Redis fails.
    pub async fn load(&self, ticket: &Ticket, now: i64) -> Result<Option<Session>, Error> {
        if ticket.exp <= now {
            return Ok(None);
        }
        let Some(codec) = ticket.codec() else {
            return Ok(None);
        };
        let sealed: Option<String> = self
            .redis
            .run(redis::cmd("GET").arg(self.record_key(&ticket.id)))
            .await?;
        Ok(sealed
            .and_then(|v| codec.open::<Session>(&record_name(&ticket.id), &v))
            .filter(|s| s.id == ticket.id && s.is_valid_at(now)))
    }

    /// Store `session` under `ticket` with TTL = remaining lifetime, and index it by subject
    /// and IdP session.
    pub async fn save(&self, ticket: &Ticket, session: &Session, now: i64) -> Result<(), Error> {
        let codec = ticket
            .codec()
            .ok_or_else(|| Error::Internal("ticket key unreadable".into()))?;
        let sealed = codec
            .seal(&record_name(&session.id), session)
            .map_err(|e| Error::Internal(format!("sealing session record: {e}")))?;
        let ttl = (session.expires_at - now).max(1);
        let _: () = self
            .redis
            .run(
                redis::cmd("SET")
                    .arg(self.record_key(&session.id))
                    .arg(sealed)
                    .arg("EX")
                    .arg(ttl),
            )
            .await?;
        let mut targets = Vec::new();
        if !session.subject.is_empty() {
            targets.push(Target::Subject(session.subject.clone()));
        }
        if let Some(sid) = &session.sid {
            targets.push(Target::IdpSession(sid.clone()));
        }
        for t in targets {
            let key = self.index_key(&t);
            let _: i64 = self
                .redis
                .run(redis::cmd("SADD").arg(&key).arg(&session.id))
                .await?;
            let _: i64 = self
                .redis
                .run(redis::cmd("EXPIRE").arg(&key).arg(self.max_life))
                .await?;
        }
        Ok(())
    }

    /// Delete the records `target` names (Redis store). Returns how many existed.
    pub async fn delete(&self, target: &Target) -> Result<u64, Error> {
        let ids: Vec<String> = match target {
            Target::SessionId(id) => vec![id.clone()],
            other => {
                self.redis
                    .run(redis::cmd("SMEMBERS").arg(self.index_key(other)))
                    .await?
            }
        };
        let mut n = 0u64;
        for id in &ids {
            let d: u64 = self
                .redis
                .run(redis::cmd("DEL").arg(self.record_key(id)))
                .await?;
            n += d;
        }
        if !matches!(target, Target::SessionId(_)) {
            let _: u64 = self
                .redis
                .run(redis::cmd("DEL").arg(self.index_key(target)))
                .await?;
        }
        Ok(n)
    }

    /// Deny-list `target` from `now` on (cookie store): sessions created at or before now are
    /// refused for as long as any of them can live.
    pub async fn deny(&self, target: &Target, now: i64) -> Result<(), Error> {
        let _: () = self
            .redis
            .run(
                redis::cmd("SET")
                    .arg(self.deny_key(target))
                    .arg(now)
                    .arg("EX")
                    .arg(self.max_life),
            )
            .await?;
        Ok(())
    }

    /// Whether a cookie session is on the deny-list (by id, subject or IdP session).
    pub async fn denied(&self, session: &Session) -> Result<bool, Error> {
        let get = |t: Option<Target>| async move {
            match t {
                None => Ok(None),
                Some(t) => {
                    self.redis
                        .run::<Option<i64>>(redis::cmd("GET").arg(self.deny_key(&t)))
                        .await
                }
            }
        };
        // Separate GETs (not MGET): the keys may live in different cluster slots. Polled
        // together, they go out back to back on the one multiplexed connection.
        let (by_id, by_sub, by_sid) = tokio::join!(
            get(Some(Target::SessionId(session.id.clone()))),
            get((!session.subject.is_empty()).then(|| Target::Subject(session.subject.clone()))),
            get(session.sid.clone().map(Target::IdpSession)),
        );
        for at in [by_id?, by_sub?, by_sid?].into_iter().flatten() {
            if session.created_at <= at {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Remember a back-channel logout token's `jti` until `ttl` passes; `false` when it was
    /// already seen (a replay).
    pub async fn first_use(&self, issuer: &str, jti: &str, ttl: Duration) -> Result<bool, Error> {
        let key = self
            .redis
            .key(&format!("jti:{}", hashed(&format!("{issuer}\0{jti}"))));
        let set: Option<String> = self
            .redis
            .run(
                redis::cmd("SET")
                    .arg(key)
                    .arg(1)
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl.as_secs().max(1)),
            )
            .await?;
        Ok(set.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> Session {
        Session {
            id: id.into(),
            user: "alice".into(),
            email: "alice@example.com".into(),
            preferred_username: "alice".into(),
            groups: vec![],
            id_token: Some("ID-TOKEN-SECRET".into()),
            access_token: None,
            created_at: 100,
            expires_at: 200,
            claims: Default::default(),
            subject: "alice".into(),
            sid: Some("s".into()),
            ..Session::anonymous()
        }
    }

    #[test]
    fn a_record_opens_only_with_its_ticket_and_under_its_id() {
        let s = session("one");
        let ticket = Ticket::new(&s);
        let codec = ticket.codec().expect("key");
        let sealed = codec.seal(&record_name("one"), &s).expect("seal");
        assert!(!sealed.contains("alice") && !sealed.contains("ID-TOKEN"));
        let opened: Option<Session> = codec.open(&record_name("one"), &sealed);
        assert_eq!(opened, Some(s.clone()));
        // Moved to another id, or opened with another session's key: nothing.
        assert!(codec
            .open::<Session>(&record_name("two"), &sealed)
            .is_none());
        let other = Ticket::new(&s).codec().expect("key");
        assert!(other
            .open::<Session>(&record_name("one"), &sealed)
            .is_none());
        // A ticket whose key is not a key opens nothing either.
        let broken = Ticket {
            key: "not-base64!".into(),
            ..ticket
        };
        assert!(broken.codec().is_none());
    }

    #[test]
    fn ticket_debug_hides_the_key_and_keys_hide_values() {
        let t = Ticket::new(&session("one"));
        let d = format!("{t:?}");
        assert!(!d.contains(&t.key), "{d}");
        assert_eq!(hashed("alice").len(), 43);
        assert!(!hashed("alice").contains("alice"));
        assert_ne!(hashed("alice"), hashed("alice "));
    }
}
