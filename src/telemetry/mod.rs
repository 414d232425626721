//! Logs and traces: the tracing subscriber (text or JSON on stderr; with the `otlp` cargo
//! feature and `tracing.otlp_endpoint`, the spans exported over OTLP/HTTP too), the W3C trace
//! context a check's span joins, and how users appear in logs.

#[cfg(feature = "otlp")]
mod otlp;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::authz::input::CheckInput;
use crate::config::{LogConfig, TracingConfig};
use crate::session::cookie::CookieKey;

/// What the subscriber needs at shutdown: the exporter to flush (none without OTLP export).
#[derive(Default)]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    otlp: Option<otlp::Exporter>,
}

impl Telemetry {
    /// Send the spans still buffered (call after the server stopped, while the runtime that
    /// carries the exporter's requests still exists).
    pub fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(e) = self.otlp {
            e.shutdown();
        }
    }
}

/// Install the global subscriber: text or JSON lines on stderr filtered by `log.level` (or
/// `RUST_LOG`), plus the OTLP exporter when configured. `runtime` carries the exporter's HTTP
/// requests. A second installation (tests) keeps the first.
pub fn init(
    log: &LogConfig,
    tracing_cfg: &TracingConfig,
    runtime: &tokio::runtime::Handle,
) -> anyhow::Result<Telemetry> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        // Colour codes only for a terminal: not in log files or collectors (and formatting
        // them was a measurable share of each check's span).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let fmt = if log.json {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    #[cfg(feature = "otlp")]
    {
        if let Some(endpoint) = &tracing_cfg.otlp_endpoint {
            let (layer, exporter) = otlp::layer(endpoint, &tracing_cfg.service_name, runtime)?;
            let _ = tracing_subscriber::registry()
                .with(fmt)
                .with(layer)
                .try_init();
            tracing::info!(endpoint = %endpoint, "exporting spans over OTLP/HTTP");
            return Ok(Telemetry {
                otlp: Some(exporter),
            });
        }
    }
    let _ = (tracing_cfg, runtime);
    let _ = tracing_subscriber::registry().with(fmt).try_init();
    Ok(Telemetry::default())
}

/// Make `span` a child of the caller's span named by the check's W3C `traceparent` (and
/// `tracestate`), so the exported span joins the mesh's trace. Without OTLP export: nothing.
pub fn join_caller_trace(span: &tracing::Span, input: &CheckInput) {
    #[cfg(feature = "otlp")]
    otlp::set_remote_parent(span, input);
    #[cfg(not(feature = "otlp"))]
    let _ = (span, input);
}

/// How a user appears in logs: their id with `log.include_user`, else `hmac:` and 16 hex
/// digits of a keyed hash. The key is derived from the cookie secret, so the same user has the
/// same hash on every replica and across restarts (and a new one after a secret rotation), and
/// no one without the secret can test guesses against it.
#[derive(Clone)]
pub struct LogUsers {
    /// `None`: users are logged as they are.
    key: Option<[u8; 32]>,
}

impl LogUsers {
    pub fn new(include_user: bool, cookie_key: &CookieKey) -> Self {
        Self {
            key: (!include_user).then(|| cookie_key.derive("portcullis log user v1")),
        }
    }

    /// The value of a log line's `user` field.
    pub fn show(&self, user: &str) -> String {
        use hmac::Mac;
        let Some(key) = &self.key else {
            return user.to_string();
        };
        let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key) else {
            return "hmac:unavailable".into();
        };
        mac.update(user.as_bytes());
        let digest = mac.finalize().into_bytes();
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("hmac:{hex}")
    }
}

impl std::fmt::Debug for LogUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogUsers")
            .field("hashed", &self.key.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_hashed_unless_included() {
        let k1 = CookieKey::generate();
        let k2 = CookieKey::generate();
        let hashed = LogUsers::new(false, &k1);
        let a = hashed.show("alice@example.com");
        assert!(a.starts_with("hmac:") && a.len() == 5 + 16, "{a}");
        assert!(!a.contains("alice"));
        assert_eq!(a, hashed.show("alice@example.com"), "stable");
        assert_ne!(a, hashed.show("bob@example.com"));
        assert_eq!(a, LogUsers::new(false, &k1).show("alice@example.com"));
        assert_ne!(
            a,
            LogUsers::new(false, &k2).show("alice@example.com"),
            "keyed: another deployment's secret gives another hash"
        );
        assert_eq!(
            LogUsers::new(true, &k1).show("alice@example.com"),
            "alice@example.com"
        );
    }
}
