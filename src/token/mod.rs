//! Bearer JWTs from API clients and services (issue 4): `jwks.rs` keeps each trusted issuer's
//! keys, `bearer.rs` verifies purely against a snapshot of them, `cache.rs` remembers verified
//! tokens. [`Bearers`] ties them together for `authz::check`. Nothing here knows about HTTP
//! servers, gRPC or configuration loading.

pub mod bearer;
pub mod cache;
pub mod crypto;
pub mod jwks;
pub mod testkit;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::BearerConfig;
use bearer::{BearerError, Verified};
use cache::VerifiedCache;
use jwks::{Fetcher, IssuerKeys};

/// Counters for the metrics issue to export. Plain atomics, relaxed: they are statistics.
#[derive(Debug, Default)]
pub struct BearerStats {
    /// Bearer JWTs looked at (cache hits included).
    pub verifications: AtomicU64,
    pub verified: AtomicU64,
    pub rejected: AtomicU64,
    pub cache_hits: AtomicU64,
    /// JWKS GETs (start-up, background, unknown-kid).
    pub jwks_fetches: AtomicU64,
    pub jwks_fetch_errors: AtomicU64,
    /// Unknown-kid refetches refused by the rate limit.
    pub jwks_refetches_suppressed: AtomicU64,
}

impl BearerStats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// What became of one bearer token.
#[derive(Debug, Clone)]
pub enum Verdict {
    Verified(Verified),
    Rejected(BearerError),
    /// The token names a configured issuer whose keys never loaded: an infrastructure failure
    /// (503), not the caller's fault and never an allow.
    KeysUnavailable(String),
}

/// Every trusted issuer, the verified-token cache and the counters.
pub struct Bearers {
    issuers: Vec<Arc<IssuerKeys>>,
    fetcher: Arc<Fetcher>,
    cache: VerifiedCache,
    leeway: i64,
    pub stats: Arc<BearerStats>,
}

impl Bearers {
    /// Build (no I/O). `http_timeout` bounds every JWKS and discovery request.
    pub fn new(cfg: &BearerConfig, http_timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(http_timeout)
            .connect_timeout(http_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let stats = Arc::new(BearerStats::default());
        Ok(Self {
            issuers: cfg
                .issuers
                .iter()
                .map(|i| Arc::new(IssuerKeys::new(i.clone())))
                .collect(),
            fetcher: Arc::new(Fetcher {
                http,
                max_bytes: cfg.jwks_max_bytes,
                refetch_interval: cfg.refetch_interval,
                refresh_interval: cfg.refresh_interval,
                stats: stats.clone(),
            }),
            cache: VerifiedCache::new(cfg.cache_size),
            leeway: i64::try_from(cfg.leeway.as_secs()).unwrap_or(0),
            stats,
        })
    }

    /// Fetch every issuer's keys once, concurrently; failures are logged and left to the
    /// background refresh (readiness reports them meanwhile).
    pub async fn load_all(&self) {
        let mut set = tokio::task::JoinSet::new();
        for i in &self.issuers {
            let (i, f) = (i.clone(), self.fetcher.clone());
            set.spawn(async move {
                if let Err(e) = i.refresh(&f).await {
                    tracing::warn!(issuer = %i.config.issuer, error = %e, "bearer issuer keys not loaded");
                }
            });
        }
        while set.join_next().await.is_some() {}
    }

    /// Background refresh, one task per issuer: soon and with backoff while keys never
    /// loaded, then every `refresh_interval` (or the JWKS's shorter max-age).
    pub fn spawn_refresh(&self) {
        for issuer in &self.issuers {
            let issuer = issuer.clone();
            let f = self.fetcher.clone();
            tokio::spawn(async move {
                let mut backoff = Duration::from_secs(1);
                loop {
                    let wait = if issuer.is_loaded() {
                        issuer.next_refresh_in(&f).await
                    } else {
                        let w = backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                        w
                    };
                    tokio::time::sleep(wait).await;
                    if let Err(e) = issuer.refresh(&f).await {
                        tracing::warn!(issuer = %issuer.config.issuer, error = %e, "JWKS refresh failed; keeping the last good keys");
                    }
                }
            });
        }
    }

    /// Issuers whose keys never loaded (readiness).
    pub fn not_ready(&self) -> Vec<String> {
        self.issuers
            .iter()
            .filter(|i| !i.is_loaded())
            .map(|i| i.config.issuer.clone())
            .collect()
    }

    /// Issuers whose keys loaded once but whose last fetch failed: still verifying with the
    /// last good keys (readiness reports them as degraded, not as down).
    pub fn degraded(&self) -> Vec<String> {
        self.issuers
            .iter()
            .filter(|i| i.is_loaded() && i.is_failing())
            .map(|i| i.config.issuer.clone())
            .collect()
    }

    /// Verify one JWS-shaped token at `now`.
    pub async fn verify(&self, token: &str, now: i64) -> Verdict {
        self.stats.verifications.fetch_add(1, Ordering::Relaxed);
        let verdict = self.verify_uncounted(token, now).await;
        let counter = match &verdict {
            Verdict::Verified(_) => &self.stats.verified,
            _ => &self.stats.rejected,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        verdict
    }

    async fn verify_uncounted(&self, token: &str, now: i64) -> Verdict {
        if let bearer::Shape::Bad(e) = bearer::shape(token) {
            return Verdict::Rejected(e);
        }
        if let Some(v) = self.cache.get(token, now) {
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Verdict::Verified(v);
        }
        let iss = match bearer::unverified_issuer(token) {
            Ok(i) => i,
            Err(e) => return Verdict::Rejected(e),
        };
        let Some(issuer) = self.issuers.iter().find(|i| i.config.issuer == iss) else {
            return Verdict::Rejected(BearerError::UntrustedIssuer);
        };
        if !issuer.is_loaded() {
            // One attempt now (rate-limited like any unknown kid) before calling it an outage.
            let seen = issuer.generation();
            if !issuer.refetch_for_unknown_kid(seen, &self.fetcher).await {
                return Verdict::KeysUnavailable(issuer.config.issuer.clone());
            }
        }
        let seen = issuer.generation();
        let mut result =
            bearer::verify(token, &issuer.config, &issuer.snapshot(), now, self.leeway);
        if result == Err(BearerError::UnknownKey)
            && issuer.refetch_for_unknown_kid(seen, &self.fetcher).await
        {
            result = bearer::verify(token, &issuer.config, &issuer.snapshot(), now, self.leeway);
        }
        match result {
            Ok(v) => {
                let v = Arc::new(v);
                self.cache.insert(token, v.clone(), now);
                Verdict::Verified(v)
            }
            Err(e) => Verdict::Rejected(e),
        }
    }
}
