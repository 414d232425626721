//! `[session]` (where sessions live: cookies or Redis) and `[admin]` (the admin API's bearer
//! token). Raw layer and validation; every failure names its key, e.g. `session.redis.url`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::{comma_list, non_empty, parse_duration, read_secret, ConfigError, Secret};

/// Where the session lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The whole session, encrypted, in the cookie.
    Cookie,
    /// An opaque ticket in the cookie; the session, encrypted with the ticket's key, in Redis.
    Redis,
}

/// The validated `[session]` section.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub store: StoreKind,
    /// Set when any `session.redis.*` location is configured: the Redis store, or, with the
    /// cookie store, the revocation deny-list.
    pub redis: Option<RedisConfig>,
}

/// How to reach Redis: exactly one of standalone, Sentinel or Cluster. `Debug` hides passwords
/// (in `password_file`'s secret and in the URLs).
#[derive(Clone)]
pub struct RedisConfig {
    pub topology: RedisTopology,
    /// From `session.redis.password_file`; overrides a password in the URLs.
    pub password: Option<Secret>,
    /// PEM CA bundle for `rediss://` (system roots when unset).
    pub ca_file: Option<PathBuf>,
    /// Bound on connecting and on every command.
    pub timeout: Duration,
    /// Prepended to every key.
    pub key_prefix: String,
}

#[derive(Clone, PartialEq, Eq)]
pub enum RedisTopology {
    Standalone(Url),
    Sentinel { urls: Vec<Url>, master: String },
    Cluster(Vec<Url>),
}

/// A Redis URL for logs and errors: any password replaced by `***`.
pub fn redacted_url(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    u.to_string()
}

/// An unparsed value for an error message: whatever may carry credentials is not echoed.
fn redacted_raw(s: &str) -> String {
    if s.contains('@') {
        "<value with credentials, not shown>".into()
    } else {
        format!("{s:?}")
    }
}

impl std::fmt::Debug for RedisTopology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |u: &[Url]| u.iter().map(redacted_url).collect::<Vec<_>>();
        match self {
            RedisTopology::Standalone(u) => {
                f.debug_tuple("Standalone").field(&redacted_url(u)).finish()
            }
            RedisTopology::Sentinel { urls, master } => f
                .debug_struct("Sentinel")
                .field("urls", &list(urls))
                .field("master", master)
                .finish(),
            RedisTopology::Cluster(urls) => f.debug_tuple("Cluster").field(&list(urls)).finish(),
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("topology", &self.topology)
            .field("password", &self.password)
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

/// The validated `[admin]` section.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// Bearer token for `/admin/*`; `None` disables the admin API (404).
    pub token: Option<Secret>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSession {
    pub store: String,
    pub redis: RawRedis,
}

impl Default for RawSession {
    fn default() -> Self {
        Self {
            store: "cookie".into(),
            redis: RawRedis::default(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRedis {
    pub url: String,
    #[serde(deserialize_with = "comma_list")]
    pub sentinel_urls: Vec<String>,
    pub sentinel_master: String,
    #[serde(deserialize_with = "comma_list")]
    pub cluster_urls: Vec<String>,
    pub password_file: String,
    pub ca_file: String,
    pub timeout: String,
    pub key_prefix: String,
}

impl Default for RawRedis {
    fn default() -> Self {
        Self {
            url: String::new(),
            sentinel_urls: Vec::new(),
            sentinel_master: String::new(),
            cluster_urls: Vec::new(),
            password_file: String::new(),
            ca_file: String::new(),
            timeout: "1s".into(),
            key_prefix: "portcullis:".into(),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    pub token: String,
    pub token_file: String,
}

pub(super) fn validate_admin(raw: RawAdmin) -> Result<AdminConfig, ConfigError> {
    let token = read_secret(
        "admin.token",
        &raw.token,
        "admin.token_file",
        &raw.token_file,
    )?;
    if let Some(t) = &token {
        if t.len() < 16 {
            return Err(ConfigError::new(
                "admin.token",
                "must be at least 16 characters (generate one with: openssl rand -base64 32)",
            ));
        }
    }
    Ok(AdminConfig {
        token: token.map(Secret::new),
    })
}

fn redis_url(key: &str, s: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(s.trim()).map_err(|e| {
        ConfigError::new(
            key,
            format!(
                "expected redis://host:6379/0 or rediss://…, got {} ({e})",
                redacted_raw(s)
            ),
        )
    })?;
    if !matches!(url.scheme(), "redis" | "rediss") || url.host_str().unwrap_or("").is_empty() {
        return Err(ConfigError::new(
            key,
            format!(
                "expected a redis:// or rediss:// URL with a host, got {}",
                redacted_raw(s)
            ),
        ));
    }
    Ok(url)
}

pub(super) fn validate_session(raw: RawSession) -> Result<SessionConfig, ConfigError> {
    let store = match raw.store.trim().to_ascii_lowercase().as_str() {
        "cookie" | "" => StoreKind::Cookie,
        "redis" => StoreKind::Redis,
        other => {
            return Err(ConfigError::new(
                "session.store",
                format!("expected \"cookie\" or \"redis\", got {other:?}"),
            ))
        }
    };
    let r = raw.redis;
    let url = non_empty(r.url);
    let sentinels: Vec<String> = r.sentinel_urls.into_iter().filter_map(non_empty).collect();
    let cluster: Vec<String> = r.cluster_urls.into_iter().filter_map(non_empty).collect();
    let master = non_empty(r.sentinel_master);
    let set = [url.is_some(), !sentinels.is_empty(), !cluster.is_empty()]
        .iter()
        .filter(|b| **b)
        .count();
    if set > 1 {
        return Err(ConfigError::new(
            "session.redis.url",
            "set only one of session.redis.url, session.redis.sentinel_urls and session.redis.cluster_urls",
        ));
    }
    let topology = if let Some(u) = url {
        if master.is_some() {
            return Err(ConfigError::new(
                "session.redis.sentinel_master",
                "only used with session.redis.sentinel_urls",
            ));
        }
        Some(RedisTopology::Standalone(redis_url(
            "session.redis.url",
            &u,
        )?))
    } else if !sentinels.is_empty() {
        let master = master.ok_or_else(|| {
            ConfigError::new(
                "session.redis.sentinel_master",
                "is required with session.redis.sentinel_urls (the name the sentinels monitor)",
            )
        })?;
        let urls = sentinels
            .iter()
            .enumerate()
            .map(|(i, s)| redis_url(&format!("session.redis.sentinel_urls[{i}]"), s))
            .collect::<Result<Vec<_>, _>>()?;
        Some(RedisTopology::Sentinel { urls, master })
    } else if !cluster.is_empty() {
        let urls = cluster
            .iter()
            .enumerate()
            .map(|(i, s)| redis_url(&format!("session.redis.cluster_urls[{i}]"), s))
            .collect::<Result<Vec<_>, _>>()?;
        Some(RedisTopology::Cluster(urls))
    } else {
        if master.is_some() {
            return Err(ConfigError::new(
                "session.redis.sentinel_master",
                "only used with session.redis.sentinel_urls",
            ));
        }
        None
    };
    if store == StoreKind::Redis && topology.is_none() {
        return Err(ConfigError::new(
            "session.store",
            "\"redis\" needs session.redis.url, session.redis.sentinel_urls or session.redis.cluster_urls",
        ));
    }
    let password = read_secret(
        "session.redis.password_file",
        "",
        "session.redis.password_file",
        &r.password_file,
    )?
    .map(Secret::new);
    let ca_file = non_empty(r.ca_file).map(PathBuf::from);
    if let Some(p) = &ca_file {
        if !p.is_file() {
            return Err(ConfigError::new(
                "session.redis.ca_file",
                format!("{} does not exist or is not a file", p.display()),
            ));
        }
    }
    let timeout = parse_duration("session.redis.timeout", &r.timeout)?;
    if timeout < Duration::from_millis(10) || timeout > Duration::from_secs(60) {
        return Err(ConfigError::new(
            "session.redis.timeout",
            "must be between 10ms and 60s",
        ));
    }
    if r.key_prefix
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ConfigError::new(
            "session.redis.key_prefix",
            "must not contain spaces or control characters",
        ));
    }
    Ok(SessionConfig {
        store,
        redis: topology.map(|topology| RedisConfig {
            topology,
            password,
            ca_file,
            timeout,
            key_prefix: r.key_prefix,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(f: impl FnOnce(&mut RawSession)) -> RawSession {
        let mut r = RawSession::default();
        f(&mut r);
        r
    }

    #[test]
    fn default_is_the_cookie_store_without_redis() {
        let c = validate_session(RawSession::default()).expect("valid");
        assert_eq!(c.store, StoreKind::Cookie);
        assert!(c.redis.is_none());
    }

    #[test]
    fn topologies_parse() {
        let c = validate_session(raw(|r| {
            r.store = "redis".into();
            r.redis.url = "rediss://cache.internal:6380/2".into();
        }))
        .expect("valid");
        let redis = c.redis.expect("redis");
        assert!(
            matches!(redis.topology, RedisTopology::Standalone(u) if u.as_str() == "rediss://cache.internal:6380/2")
        );
        assert_eq!(redis.timeout, Duration::from_secs(1));

        let c = validate_session(raw(|r| {
            r.store = "redis".into();
            r.redis.sentinel_urls = vec!["redis://s1:26379".into(), "redis://s2:26379".into()];
            r.redis.sentinel_master = "mymaster".into();
        }))
        .expect("valid");
        assert!(matches!(
            c.redis.expect("redis").topology,
            RedisTopology::Sentinel { ref urls, ref master } if urls.len() == 2 && master == "mymaster"
        ));

        let c = validate_session(raw(|r| {
            r.redis.cluster_urls = vec!["redis://n1:7000".into(), "redis://n2:7001".into()];
        }))
        .expect("cookie store with a Redis deny-list");
        assert_eq!(c.store, StoreKind::Cookie);
        assert!(matches!(
            c.redis.expect("redis").topology,
            RedisTopology::Cluster(ref u) if u.len() == 2
        ));
    }

    #[test]
    fn every_bad_key_is_named() {
        let cases: Vec<(RawSession, &str)> = vec![
            (raw(|r| r.store = "memcached".into()), "session.store"),
            (raw(|r| r.store = "redis".into()), "session.store"),
            (
                raw(|r| r.redis.url = "http://x:6379".into()),
                "session.redis.url",
            ),
            (
                raw(|r| r.redis.url = "redis://".into()),
                "session.redis.url",
            ),
            (
                raw(|r| {
                    r.redis.url = "redis://a".into();
                    r.redis.cluster_urls = vec!["redis://b".into()];
                }),
                "session.redis.url",
            ),
            (
                raw(|r| r.redis.sentinel_urls = vec!["redis://s:26379".into()]),
                "session.redis.sentinel_master",
            ),
            (
                raw(|r| r.redis.sentinel_master = "m".into()),
                "session.redis.sentinel_master",
            ),
            (
                raw(|r| {
                    r.redis.sentinel_urls = vec!["redis://s:26379".into(), "tcp://x".into()];
                    r.redis.sentinel_master = "m".into();
                }),
                "session.redis.sentinel_urls[1]",
            ),
            (
                raw(|r| r.redis.cluster_urls = vec!["nope".into()]),
                "session.redis.cluster_urls[0]",
            ),
            (
                raw(|r| {
                    r.redis.url = "redis://a".into();
                    r.redis.password_file = "/nonexistent/pw".into();
                }),
                "session.redis.password_file",
            ),
            (
                raw(|r| {
                    r.redis.url = "redis://a".into();
                    r.redis.ca_file = "/nonexistent/ca.pem".into();
                }),
                "session.redis.ca_file",
            ),
            (
                raw(|r| {
                    r.redis.url = "redis://a".into();
                    r.redis.timeout = "1ms".into();
                }),
                "session.redis.timeout",
            ),
            (
                raw(|r| {
                    r.redis.url = "redis://a".into();
                    r.redis.key_prefix = "a b".into();
                }),
                "session.redis.key_prefix",
            ),
        ];
        for (r, key) in cases {
            let err = validate_session(r).expect_err(key);
            assert_eq!(err.key, key, "{err}");
        }
    }

    #[test]
    fn redis_passwords_never_show() {
        let c = validate_session(raw(|r| {
            r.store = "redis".into();
            r.redis.url = "redis://user:hunter2@cache:6379/0".into();
        }))
        .expect("valid");
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2") && d.contains("***"), "{d}");
        let err = validate_session(raw(|r| r.redis.url = "http://u:hunter2@x".into()))
            .expect_err("bad scheme");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn admin_token_is_optional_but_not_weak() {
        assert!(validate_admin(RawAdmin::default())
            .expect("ok")
            .token
            .is_none());
        let err = validate_admin(RawAdmin {
            token: "short".into(),
            token_file: String::new(),
        })
        .expect_err("short");
        assert_eq!(err.key, "admin.token");
        let ok = validate_admin(RawAdmin {
            token: "0123456789abcdef0123".into(),
            token_file: String::new(),
        })
        .expect("ok");
        assert_eq!(format!("{:?}", ok.token), "Some([redacted])");
    }
}
