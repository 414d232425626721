//! The Redis connection behind the session store and the revocation deny-list: standalone
//! (`redis://`, `rediss://` with an optional CA), Sentinel (the master is looked up through the
//! sentinels at every reconnect, so a failover is followed) or Cluster.
//!
//! One multiplexed connection (or the cluster client's own) is shared by every request. A
//! command that fails with a connection error drops it; the next command reconnects, so service
//! returns by itself when Redis does. Connecting and every command are bounded by
//! `session.redis.timeout`. Failures are `Error::Store` (503), never a denial or an allow.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, Cmd, FromRedisValue, RedisError, Value};
use tokio::sync::Mutex;

use crate::config::{RedisConfig, RedisTopology};
use crate::error::Error;

/// A shared, self-healing Redis connection.
pub struct Redis {
    connector: Connector,
    conn: Mutex<Option<Conn>>,
    timeout: Duration,
    prefix: String,
}

enum Connector {
    Standalone(Client),
    Sentinel(Mutex<SentinelClient>),
    Cluster(redis::cluster::ClusterClient),
}

#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

enum Retry {
    /// READONLY: the command did not run; reconnecting finds the writable master.
    ReadOnly,
    No(Error),
}

/// A held lock: pass it back to [`Redis::unlock`]. Expires by itself after its TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockGuard {
    key: String,
    token: String,
}

/// Deletes the key only if it still holds our token, so a lock that expired and was taken by
/// someone else is never released by us.
const UNLOCK_SCRIPT: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

impl Redis {
    /// Build the client (no I/O: the first command connects).
    pub fn new(cfg: &RedisConfig) -> Result<Self, String> {
        let certs = match &cfg.ca_file {
            Some(p) => Some(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(
                    std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))?,
                ),
            }),
            None => None,
        };
        let password = cfg.password.as_ref().map(|p| p.expose().to_string());
        let info = |url: &url::Url| -> Result<redis::ConnectionInfo, String> {
            let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())
                .map_err(|e| format!("{}: {e}", crate::config::redacted_url(url)))?;
            Ok(match &password {
                Some(p) => {
                    let r = info.redis_settings().clone().set_password(p);
                    info.set_redis_settings(r)
                }
                None => info,
            })
        };
        let connector = match &cfg.topology {
            RedisTopology::Standalone(url) => {
                let i = info(url)?;
                let client = match &certs {
                    Some(c) => Client::build_with_tls(i, c.clone()),
                    None => Client::open(i),
                }
                .map_err(|e| e.to_string())?;
                Connector::Standalone(client)
            }
            RedisTopology::Sentinel { urls, master } => {
                let sentinels = urls.iter().map(info).collect::<Result<Vec<_>, _>>()?;
                // The master's own connection settings: its password (the same file) and TLS
                // when the sentinels are reached over TLS.
                let mut node = SentinelNodeConnectionInfo::default();
                if let Some(p) = &password {
                    node = node.set_redis_connection_info(
                        redis::RedisConnectionInfo::default().set_password(p),
                    );
                }
                if urls.iter().any(|u| u.scheme() == "rediss") {
                    node = node.set_tls_mode(redis::TlsMode::Secure);
                }
                let client = SentinelClient::build(
                    sentinels,
                    master.clone(),
                    Some(node),
                    SentinelServerType::Master,
                )
                .map_err(|e| e.to_string())?;
                Connector::Sentinel(Mutex::new(client))
            }
            RedisTopology::Cluster(urls) => {
                let nodes = urls.iter().map(info).collect::<Result<Vec<_>, _>>()?;
                let mut b = redis::cluster::ClusterClientBuilder::new(nodes)
                    .connection_timeout(cfg.timeout)
                    .response_timeout(cfg.timeout)
                    .retries(1);
                if let Some(c) = &certs {
                    b = b.certs(c.clone());
                }
                Connector::Cluster(b.build().map_err(|e| e.to_string())?)
            }
        };
        Ok(Self {
            connector,
            conn: Mutex::new(None),
            timeout: cfg.timeout,
            prefix: cfg.key_prefix.clone(),
        })
    }

    /// `prefix` + `key`.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Run one command. Connection failures and timeouts are `Error::Store`, and drop the
    /// connection so the next command reconnects.
    pub async fn run<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Error> {
        match self.run_once(cmd).await {
            // A master demoted by a failover refused the write without running it: ask the
            // sentinels for the new master and try once more.
            Err(Retry::ReadOnly) => match self.run_once(cmd).await {
                Ok(v) => Ok(v),
                Err(Retry::ReadOnly) => Err(Error::Store("redis master is read-only".into())),
                Err(Retry::No(e)) => Err(e),
            },
            Err(Retry::No(e)) => Err(e),
            Ok(v) => Ok(v),
        }
    }

    async fn run_once<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Retry> {
        let mut conn = self.connection().await.map_err(Retry::No)?;
        let result = tokio::time::timeout(self.timeout, async {
            match &mut conn {
                Conn::Single(c) => c.req_packed_command(cmd).await,
                Conn::Cluster(c) => c.req_packed_command(cmd).await,
            }
        })
        .await
        // A server's error reply (READONLY, WRONGTYPE, …) arrives as a value: make it an error.
        .map(|r| r.and_then(Value::extract_error));
        let value: Value = match result {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                if drops_connection(&e) {
                    self.forget().await;
                }
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly) {
                    return Err(Retry::ReadOnly);
                }
                return Err(Retry::No(Error::Store(format!(
                    "redis command failed: {e}"
                ))));
            }
            Err(_) => {
                self.forget().await;
                return Err(Retry::No(Error::Store(format!(
                    "redis did not answer within {:?}",
                    self.timeout
                ))));
            }
        };
        T::from_redis_value(value)
            .map_err(|e| Retry::No(Error::Store(format!("unexpected redis reply: {e}"))))
    }

    /// Readiness: PING.
    pub async fn ping(&self) -> Result<(), Error> {
        let pong: String = self.run(&redis::cmd("PING")).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(Error::Store(format!("unexpected PING reply {pong:?}")))
        }
    }

    /// Take the lock `name` for `ttl` if nobody holds it (`SET NX PX` with a random token).
    /// `Ok(None)`: someone else holds it. For cross-replica single flight (token refresh).
    pub async fn try_lock(&self, name: &str, ttl: Duration) -> Result<Option<LockGuard>, Error> {
        let key = self.key(&format!("lock:{name}"));
        let token = crate::session::random_id();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let set: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms),
            )
            .await?;
        Ok(set.map(|_| LockGuard { key, token }))
    }

    /// Release a lock we hold; `false` when it had already expired (and maybe been retaken).
    pub async fn unlock(&self, guard: &LockGuard) -> Result<bool, Error> {
        let n: i64 = self
            .run(
                redis::cmd("EVAL")
                    .arg(UNLOCK_SCRIPT)
                    .arg(1)
                    .arg(&guard.key)
                    .arg(&guard.token),
            )
            .await?;
        Ok(n == 1)
    }

    async fn connection(&self) -> Result<Conn, Error> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let conn = tokio::time::timeout(self.timeout * 2, self.connect())
            .await
            .map_err(|_| {
                Error::Store(format!(
                    "connecting to redis took longer than {:?}",
                    self.timeout * 2
                ))
            })?
            .map_err(|e| Error::Store(format!("connecting to redis: {e}")))?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn connect(&self) -> Result<Conn, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        match &self.connector {
            Connector::Standalone(c) => Ok(Conn::Single(
                c.get_multiplexed_async_connection_with_config(&config)
                    .await?,
            )),
            Connector::Sentinel(s) => {
                let mut s = s.lock().await;
                Ok(Conn::Single(
                    s.get_async_connection_with_config(&config).await?,
                ))
            }
            Connector::Cluster(c) => Ok(Conn::Cluster(c.get_async_connection().await?)),
        }
    }

    async fn forget(&self) {
        *self.conn.lock().await = None;
    }
}

/// Whether an error means the connection is unusable (as opposed to a command error such as
/// WRONGTYPE, after which the connection is fine). A replica that became read-only after a
/// failover also counts: reconnecting asks the sentinels for the new master.
fn drops_connection(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        || e.is_unrecoverable_error()
}

/// Shared handle.
pub type SharedRedis = Arc<Redis>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn cfg(topology: RedisTopology) -> RedisConfig {
        RedisConfig {
            topology,
            password: Some(Secret::new("pw")),
            ca_file: None,
            timeout: Duration::from_millis(200),
            key_prefix: "p:".into(),
        }
    }

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).expect("url")
    }

    #[test]
    fn every_topology_builds_without_io() {
        for t in [
            RedisTopology::Standalone(url("redis://127.0.0.1:1/0")),
            RedisTopology::Standalone(url("rediss://cache.internal:6380/1")),
            RedisTopology::Sentinel {
                urls: vec![url("redis://127.0.0.1:1"), url("redis://127.0.0.1:2")],
                master: "mymaster".into(),
            },
            RedisTopology::Cluster(vec![url("redis://127.0.0.1:1")]),
        ] {
            let r = Redis::new(&cfg(t.clone())).unwrap_or_else(|e| panic!("{t:?}: {e}"));
            assert_eq!(r.key("s:x"), "p:s:x");
        }
    }

    #[test]
    fn an_unreadable_ca_file_is_an_error() {
        let mut c = cfg(RedisTopology::Standalone(url("rediss://h:6380")));
        c.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(Redis::new(&c).is_err());
    }

    #[tokio::test]
    async fn nothing_listening_is_a_store_error_within_the_timeout() {
        // Port 1 on loopback: connection refused at once.
        let r = Redis::new(&cfg(RedisTopology::Standalone(url(
            "redis://127.0.0.1:1/0",
        ))))
        .expect("client");
        let started = std::time::Instant::now();
        let err = r.ping().await.expect_err("nothing there");
        assert!(matches!(err, Error::Store(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(r.try_lock("x", Duration::from_secs(1)).await.is_err());
    }
}
