//! `[log]` and `[tracing]`: how portcullis reports what it does.

use serde::{Deserialize, Serialize};
use url::Url;

use super::{non_empty, ConfigError};

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub json: bool,
    /// Log users by their id; otherwise by a keyed hash (see `telemetry::LogUsers`).
    pub include_user: bool,
}

/// `[tracing]`: OTLP export of the `check` spans (the `otlp` cargo feature).
#[derive(Debug, Clone, Default)]
pub struct TracingConfig {
    /// Where spans go (OTLP/HTTP with protobuf, e.g. `http://otel-collector:4318/v1/traces`);
    /// `None`: no export.
    pub otlp_endpoint: Option<Url>,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub level: String,
    pub format: String,
    pub include_user: bool,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "text".into(),
            include_user: false,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTracing {
    pub otlp_endpoint: String,
    pub service_name: String,
}

impl Default for RawTracing {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            service_name: "portcullis".into(),
        }
    }
}

pub(crate) fn validate_log(raw: RawLog) -> Result<LogConfig, ConfigError> {
    let json = match raw.format.as_str() {
        "text" => false,
        "json" => true,
        other => {
            return Err(ConfigError::new(
                "log.format",
                format!("expected \"text\" or \"json\", got {other:?}"),
            ))
        }
    };
    Ok(LogConfig {
        level: raw.level,
        json,
        include_user: raw.include_user,
    })
}

/// Whether this binary was built with the `otlp` feature.
pub const OTLP_BUILT_IN: bool = cfg!(feature = "otlp");

pub(crate) fn validate_tracing(raw: RawTracing) -> Result<TracingConfig, ConfigError> {
    const KEY: &str = "tracing.otlp_endpoint";
    let service_name = raw.service_name.trim().to_string();
    if service_name.is_empty() {
        return Err(ConfigError::new(
            "tracing.service_name",
            "must not be empty (default \"portcullis\")",
        ));
    }
    let Some(endpoint) = non_empty(raw.otlp_endpoint) else {
        return Ok(TracingConfig {
            otlp_endpoint: None,
            service_name,
        });
    };
    if !OTLP_BUILT_IN {
        return Err(ConfigError::new(
            KEY,
            "this portcullis was built without OTLP export; build it with `--features otlp` or leave the key empty",
        ));
    }
    let mut url = Url::parse(&endpoint)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            ConfigError::new(
                KEY,
                format!(
                    "expected an http(s) URL such as http://otel-collector:4318, got {endpoint:?}"
                ),
            )
        })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::new(
            KEY,
            "must not contain credentials (set OTEL_EXPORTER_OTLP_HEADERS instead)",
        ));
    }
    // A bare collector address gets the OTLP/HTTP traces path, as OTEL_EXPORTER_OTLP_ENDPOINT
    // does; a URL with a path is used as written.
    if url.path() == "/" || url.path().is_empty() {
        url.set_path("/v1/traces");
    }
    Ok(TracingConfig {
        otlp_endpoint: Some(url),
        service_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracing(endpoint: &str) -> Result<TracingConfig, ConfigError> {
        validate_tracing(RawTracing {
            otlp_endpoint: endpoint.into(),
            ..RawTracing::default()
        })
    }

    #[test]
    fn no_endpoint_means_no_export() {
        let t = tracing("").expect("valid");
        assert!(t.otlp_endpoint.is_none());
        assert_eq!(t.service_name, "portcullis");
        let e = validate_tracing(RawTracing {
            service_name: " ".into(),
            ..RawTracing::default()
        })
        .expect_err("empty name");
        assert_eq!(e.key, "tracing.service_name");
    }

    #[cfg(not(feature = "otlp"))]
    #[test]
    fn an_endpoint_without_the_feature_is_an_error_naming_the_key() {
        let e = tracing("http://collector:4318").expect_err("no exporter built in");
        assert_eq!(e.key, "tracing.otlp_endpoint");
        assert!(e.message.contains("--features otlp"), "{e}");
    }

    #[cfg(feature = "otlp")]
    #[test]
    fn endpoints_are_checked_and_get_the_traces_path() {
        let url = |s| tracing(s).expect(s).otlp_endpoint.expect("set").to_string();
        assert_eq!(
            url("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            url("https://collector.example/otlp/v1/traces"),
            "https://collector.example/otlp/v1/traces"
        );
        for bad in ["collector:4318", "ftp://c", "http://u:p@c:4318"] {
            let e = tracing(bad).expect_err(bad);
            assert_eq!(e.key, "tracing.otlp_endpoint", "{bad}");
        }
    }
}
