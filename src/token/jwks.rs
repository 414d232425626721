//! One issuer's key set: fetched at start (a failure is reported by readiness, not fatal),
//! refreshed in the background, refetched when a token names an unknown `kid` — at most once
//! per `bearer.refetch_interval` per issuer, with concurrent requests sharing one fetch. A
//! failed fetch keeps the last good set. Responses are bounded in size (`bearer.jwks_max_bytes`)
//! and time (`oidc.http_timeout`); redirects are not followed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use super::bearer::KeySet;
use super::BearerStats;
use crate::config::BearerIssuer;

/// Why a fetch failed (logged; the last good key set stays in use).
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("request to {url} failed: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url} sent more than {max} bytes")]
    TooLarge { url: String, max: usize },
    #[error("{url} sent invalid JSON: {message}")]
    Json { url: String, message: String },
    #[error("discovery at {url} names issuer {found:?}, expected {expected:?}")]
    IssuerMismatch {
        url: String,
        found: String,
        expected: String,
    },
    #[error("{url}: {message}")]
    Invalid { url: String, message: String },
}

/// What the fetches share: the HTTP client, limits and counters.
pub struct Fetcher {
    pub http: reqwest::Client,
    pub max_bytes: usize,
    pub refetch_interval: Duration,
    pub refresh_interval: Duration,
    pub stats: Arc<BearerStats>,
}

struct FetchState {
    jwks_uri: Option<Url>,
    last_unknown_kid_fetch: Option<Instant>,
    max_age: Option<Duration>,
}

/// The keys of one configured issuer.
pub struct IssuerKeys {
    pub config: BearerIssuer,
    keys: RwLock<Arc<KeySet>>,
    loaded: AtomicBool,
    /// The last fetch failed (keys, if any, are the last good ones): readiness says "degraded".
    failing: AtomicBool,
    /// Bumped by every successful fetch; lets waiters see that someone else just fetched.
    generation: AtomicU64,
    /// Held for the whole of a fetch: single flight.
    fetch: tokio::sync::Mutex<FetchState>,
}

impl IssuerKeys {
    pub fn new(config: BearerIssuer) -> Self {
        Self {
            fetch: tokio::sync::Mutex::new(FetchState {
                jwks_uri: config.jwks_uri.clone(),
                last_unknown_kid_fetch: None,
                max_age: None,
            }),
            config,
            keys: RwLock::new(Arc::new(KeySet::default())),
            loaded: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        }
    }

    /// The current keys (empty until the first successful fetch).
    pub fn snapshot(&self) -> Arc<KeySet> {
        self.keys
            .read()
            .map(|k| k.clone())
            .unwrap_or_else(|_| Arc::new(KeySet::default()))
    }

    /// Whether keys were ever loaded.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Whether the most recent fetch failed.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Fetch now (start-up, background refresh).
    pub async fn refresh(&self, f: &Fetcher) -> Result<(), JwksError> {
        let mut state = self.fetch.lock().await;
        self.fetch_locked(&mut state, f).await
    }

    /// A token named a `kid` we do not have, seen with key-set generation `seen`. Returns
    /// whether the keys changed since (so verifying again is worth it). Fetches only if nobody
    /// fetched meanwhile and the last unknown-kid fetch is older than `refetch_interval`.
    pub async fn refetch_for_unknown_kid(&self, seen: u64, f: &Fetcher) -> bool {
        let mut state = self.fetch.lock().await;
        if self.generation() != seen {
            return true;
        }
        let now = Instant::now();
        if state
            .last_unknown_kid_fetch
            .is_some_and(|t| now.duration_since(t) < f.refetch_interval)
        {
            f.stats
                .jwks_refetches_suppressed
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        state.last_unknown_kid_fetch = Some(now);
        match self.fetch_locked(&mut state, f).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(issuer = %self.config.issuer, error = %e, "JWKS refetch failed; keeping the last good keys");
                false
            }
        }
    }

    /// How long the background task waits before the next refresh.
    pub async fn next_refresh_in(&self, f: &Fetcher) -> Duration {
        let state = self.fetch.lock().await;
        let wait = state
            .max_age
            .map_or(f.refresh_interval, |m| m.min(f.refresh_interval));
        wait.max(f.refetch_interval).max(Duration::from_secs(10))
    }

    async fn fetch_locked(&self, state: &mut FetchState, f: &Fetcher) -> Result<(), JwksError> {
        let result = self.fetch_inner(state, f).await;
        self.failing.store(result.is_err(), Ordering::Release);
        result
    }

    async fn fetch_inner(&self, state: &mut FetchState, f: &Fetcher) -> Result<(), JwksError> {
        let uri = match &state.jwks_uri {
            Some(u) => u.clone(),
            None => {
                let u = discover(&self.config.issuer, f).await?;
                state.jwks_uri = Some(u.clone());
                u
            }
        };
        f.stats.jwks_fetches.fetch_add(1, Ordering::Relaxed);
        let result = get_json(&uri, f).await;
        let (doc, max_age) = match result {
            Ok(r) => r,
            Err(e) => {
                f.stats.jwks_fetch_errors.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let set = KeySet::from_jwks(&doc).map_err(|m| {
            f.stats.jwks_fetch_errors.fetch_add(1, Ordering::Relaxed);
            JwksError::Invalid {
                url: uri.to_string(),
                message: m.to_string(),
            }
        })?;
        tracing::debug!(issuer = %self.config.issuer, keys = set.len(), "JWKS loaded");
        if let Ok(mut k) = self.keys.write() {
            *k = Arc::new(set);
        }
        state.max_age = max_age;
        self.loaded.store(true, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

/// `jwks_uri` from the issuer's discovery document, which must name the same issuer.
async fn discover(issuer: &str, f: &Fetcher) -> Result<Url, JwksError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let invalid = |message: &str| JwksError::Invalid {
        url: url.clone(),
        message: message.to_string(),
    };
    let parsed = Url::parse(&url).map_err(|_| invalid("not a URL"))?;
    let (doc, _) = get_json(&parsed, f).await?;
    let found = doc
        .get("issuer")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if found != issuer {
        return Err(JwksError::IssuerMismatch {
            url,
            found: found.to_string(),
            expected: issuer.to_string(),
        });
    }
    doc.get("jwks_uri")
        .and_then(Value::as_str)
        .and_then(|u| Url::parse(u).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| invalid("no http(s) jwks_uri"))
}

/// GET a JSON document, reading at most `max_bytes`; also returns `Cache-Control: max-age`.
async fn get_json(url: &Url, f: &Fetcher) -> Result<(Value, Option<Duration>), JwksError> {
    let http_err = |source| JwksError::Http {
        url: url.to_string(),
        source,
    };
    let mut resp = f
        .http
        .get(url.clone())
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(http_err)?;
    if !resp.status().is_success() {
        return Err(JwksError::Status {
            url: url.to_string(),
            status: resp.status().as_u16(),
        });
    }
    let max_age = resp
        .headers()
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    let too_large = || JwksError::TooLarge {
        url: url.to_string(),
        max: f.max_bytes,
    };
    if resp
        .content_length()
        .is_some_and(|l| l > f.max_bytes as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(http_err)? {
        if body.len() + chunk.len() > f.max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    let doc = serde_json::from_slice(&body).map_err(|e| JwksError::Json {
        url: url.to_string(),
        message: e.to_string(),
    })?;
    Ok((doc, max_age))
}

/// `max-age=N` from a Cache-Control value.
fn max_age(v: &str) -> Option<Duration> {
    v.split(',')
        .filter_map(|d| d.trim().strip_prefix("max-age="))
        .find_map(|n| n.trim_matches('"').parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("max-age=x"), None);
    }
}
