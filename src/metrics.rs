//! Prometheus metrics, recorded in `authz::check` (so every adapter counts alike) and around
//! the IdP calls. Every label value comes from a fixed set: no paths, no users, no hosts.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    adapter: &'static str,
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdapterLabels {
    adapter: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IdpLabels {
    endpoint: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The process's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    check_duration: HistogramFamily<AdapterLabels>,
    logins: Family<ResultLabels, Counter>,
    idp_requests: Family<IdpLabels, Counter>,
    idp_duration: HistogramFamily<EndpointLabels>,
    refreshes: Family<ResultLabels, Counter>,
}

/// 50 µs … ~1.6 s: checks are sub-millisecond, logins are IdP-bound.
fn check_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

/// 1 ms … ~16 s.
fn idp_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Checks answered, by adapter, outcome (allow, login, deny, route, error) and reason",
            decisions.clone(),
        );
        let check_duration: HistogramFamily<AdapterLabels> =
            Family::new_with_constructor(check_histogram);
        registry.register(
            "check_duration_seconds",
            "Time to answer a check, by adapter",
            check_duration.clone(),
        );
        let logins = Family::<ResultLabels, Counter>::default();
        registry.register(
            "logins",
            "Logins by result (started, succeeded, refused, failed, error)",
            logins.clone(),
        );
        let idp_requests = Family::<IdpLabels, Counter>::default();
        registry.register(
            "idp_requests",
            "Calls to the identity provider, by endpoint and status (ok, rejected, error)",
            idp_requests.clone(),
        );
        let idp_duration: HistogramFamily<EndpointLabels> =
            Family::new_with_constructor(idp_histogram);
        registry.register(
            "idp_request_duration_seconds",
            "Time of calls to the identity provider, by endpoint",
            idp_duration.clone(),
        );
        let refreshes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "session_refreshes",
            "Session token refreshes by result (refreshed, ended, failed, joined, timeout, expired)",
            refreshes.clone(),
        );
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "Build information", build_info);
        Self {
            registry,
            decisions,
            check_duration,
            logins,
            idp_requests,
            idp_duration,
            refreshes,
        }
    }

    /// One answered check.
    pub fn decision(
        &self,
        adapter: &'static str,
        outcome: &'static str,
        reason: &'static str,
        took: Duration,
    ) {
        self.decisions
            .get_or_create(&DecisionLabels {
                adapter,
                outcome,
                reason,
            })
            .inc();
        self.check_duration
            .get_or_create(&AdapterLabels { adapter })
            .observe(took.as_secs_f64());
    }

    /// A login step: `started`, `succeeded`, `refused` (policy), `failed` (caller's fault),
    /// `error` (IdP or infrastructure).
    pub fn login(&self, result: &'static str) {
        self.logins.get_or_create(&ResultLabels { result }).inc();
    }

    /// A session's refresh step: `refreshed` (new tokens), `ended` (the IdP refused the refresh
    /// token: signed out), `failed` (the IdP could not be asked), `joined` (another check's
    /// refresh answered this one), `reloaded` (another replica refreshed it: reloaded from
    /// the shared store), `timeout` (waited too long for it), `expired` (tokens
    /// expired without a refresh token: signed out).
    pub fn refresh(&self, result: &'static str) {
        self.refreshes.get_or_create(&ResultLabels { result }).inc();
    }

    /// One call to the IdP: `endpoint` is discovery, token, refresh, userinfo or jwks; `status` is ok,
    /// rejected (an OAuth error answer) or error (transport, 5xx, unreadable).
    pub fn idp(&self, endpoint: &'static str, status: &'static str, took: Duration) {
        self.idp_requests
            .get_or_create(&IdpLabels { endpoint, status })
            .inc();
        self.idp_duration
            .get_or_create(&EndpointLabels { endpoint })
            .observe(took.as_secs_f64());
    }

    /// Export the bearer-token counters (kept as plain atomics by `token::Bearers`).
    pub fn register_bearer(&mut self, stats: Arc<crate::token::BearerStats>) {
        self.registry
            .register_collector(Box::new(BearerCollector(stats)));
    }

    /// Export the session store's operation counters (`store` names the store: `cookie`).
    pub fn register_sessions(
        &mut self,
        store: &'static str,
        stats: Arc<crate::session::StoreStats>,
    ) {
        self.registry
            .register_collector(Box::new(SessionCollector { store, stats }));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: &'static str,
    op: &'static str,
    result: &'static str,
}

/// Reads `session::StoreStats` at scrape time: `portcullis_session_operations_total`.
#[derive(Debug)]
struct SessionCollector {
    store: &'static str,
    stats: Arc<crate::session::StoreStats>,
}

impl Collector for SessionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        let rows: [(&'static str, &'static str, &AtomicU64); 7] = [
            ("load", "valid", &s.load_valid),
            ("load", "absent", &s.load_absent),
            ("load", "invalid", &s.load_invalid),
            ("load", "expired", &s.load_expired),
            ("save", "ok", &s.save_ok),
            ("save", "error", &s.save_error),
            ("clear", "ok", &s.clear),
        ];
        let mut family = encoder.encode_descriptor(
            "session_operations",
            "Session store operations by result (load: valid, absent, invalid, expired; save: ok, error)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (op, result, value) in rows {
            let labels = StoreLabels {
                store: self.store,
                op,
                result,
            };
            let counter = ConstCounter::new(crate::session::StoreStats::get(value));
            counter.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Reads `BearerStats` at scrape time.
#[derive(Debug)]
struct BearerCollector(Arc<crate::token::BearerStats>);

impl Collector for BearerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let rows: [(&str, &str, &AtomicU64); 7] = [
            (
                "bearer_verifications",
                "Bearer JWTs looked at (cache hits included)",
                &s.verifications,
            ),
            ("bearer_verified", "Bearer JWTs accepted", &s.verified),
            (
                "bearer_rejected",
                "Bearer JWTs refused (401 invalid_token)",
                &s.rejected,
            ),
            (
                "bearer_cache_hits",
                "Bearer JWTs answered from the verified-token cache",
                &s.cache_hits,
            ),
            (
                "jwks_fetches",
                "JWKS requests to bearer issuers (start-up, background, unknown kid)",
                &s.jwks_fetches,
            ),
            (
                "jwks_fetch_errors",
                "JWKS requests that failed or returned an unusable key set",
                &s.jwks_fetch_errors,
            ),
            (
                "jwks_refetches_suppressed",
                "Unknown-kid refetches refused by the rate limit",
                &s.jwks_refetches_suppressed,
            ),
        ];
        for (name, help, value) in rows {
            let counter = ConstCounter::new(crate::token::BearerStats::get(value));
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_documented_names() {
        let m = Metrics::new();
        m.decision("http", "allow", "session", Duration::from_micros(120));
        m.decision("http", "allow", "session", Duration::from_micros(80));
        m.login("started");
        m.idp("token", "ok", Duration::from_millis(12));
        m.idp("refresh", "rejected", Duration::from_millis(3));
        m.refresh("refreshed");
        let text = m.encode();
        for line in [
            "portcullis_decisions_total{adapter=\"http\",outcome=\"allow\",reason=\"session\"} 2",
            "portcullis_logins_total{result=\"started\"} 1",
            "portcullis_idp_requests_total{endpoint=\"token\",status=\"ok\"} 1",
            "portcullis_idp_requests_total{endpoint=\"refresh\",status=\"rejected\"} 1",
            "portcullis_session_refreshes_total{result=\"refreshed\"} 1",
            "portcullis_check_duration_seconds_count{adapter=\"http\"} 2",
            "portcullis_build_info{version=\"",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn session_operations_are_exported_with_bounded_labels() {
        let stats = Arc::new(crate::session::StoreStats::default());
        let mut m = Metrics::new();
        m.register_sessions("cookie", stats.clone());
        crate::session::StoreStats::inc(&stats.load_valid);
        crate::session::StoreStats::inc(&stats.load_valid);
        crate::session::StoreStats::inc(&stats.save_error);
        let text = m.encode();
        for line in [
            "# TYPE portcullis_session_operations counter",
            "portcullis_session_operations_total{store=\"cookie\",op=\"load\",result=\"valid\"} 2",
            "portcullis_session_operations_total{store=\"cookie\",op=\"load\",result=\"absent\"} 0",
            "portcullis_session_operations_total{store=\"cookie\",op=\"save\",result=\"error\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn bearer_counters_are_exported() {
        let stats = Arc::new(crate::token::BearerStats::default());
        let mut m = Metrics::new();
        m.register_bearer(stats.clone());
        stats
            .jwks_fetches
            .fetch_add(3, std::sync::atomic::Ordering::Relaxed);
        stats
            .cache_hits
            .fetch_add(5, std::sync::atomic::Ordering::Relaxed);
        let text = m.encode();
        assert!(text.contains("portcullis_jwks_fetches_total 3"), "{text}");
        assert!(
            text.contains("portcullis_bearer_cache_hits_total 5"),
            "{text}"
        );
    }
}
