//! OTLP/HTTP (protobuf) export of portcullis's spans, built with the `otlp` cargo feature.
//!
//! The SDK's batch processor runs on its own thread and drives each export with a blocking
//! executor; the request itself runs on our tokio runtime through our reqwest client (rustls),
//! so no second HTTP stack or runtime comes along. The standard `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT` and `OTEL_BSP_*` environment variables apply.

use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use url::Url;

use crate::authz::input::CheckInput;

/// A collector's answer is a small protobuf message; more than this is not read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The tracer provider, kept to flush and stop it at shutdown.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "flushing spans at shutdown failed");
        }
    }
}

/// The layer that turns portcullis's spans into OTLP spans, and its exporter.
pub fn layer<S>(
    endpoint: &Url,
    service_name: &str,
    runtime: &tokio::runtime::Handle,
) -> anyhow::Result<(impl Layer<S>, Exporter)>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let client = OnRuntime {
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?,
        runtime: runtime.clone(),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint.as_str())
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_string())
                .build(),
        )
        .build();
    let tracer = provider.tracer("portcullis");
    // Only our own spans (and the events inside them, as span events) are exported.
    let filter =
        tracing_subscriber::filter::Targets::new().with_target("portcullis", tracing::Level::INFO);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter);
    Ok((layer, Exporter { provider }))
}

/// Parent `span` on the remote span context of `traceparent` / `tracestate`, when valid.
pub fn set_remote_parent(span: &tracing::Span, input: &CheckInput) {
    let cx = TraceContextPropagator::new().extract(&Headers(input));
    if cx.span().span_context().is_valid() {
        // Fails only when no OTLP layer is installed: nothing to join then.
        let _ = span.set_parent(cx);
    }
}

struct Headers<'a>(&'a CheckInput);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.header(key)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// The exporter's HTTP client: reqwest, run as a task on our runtime (the batch processor's
/// thread has no reactor of its own).
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            let request = reqwest::Request::try_from(request)?;
            let mut response = client.execute(request).await?;
            let mut out = http::Response::builder().status(response.status());
            if let Some(h) = out.headers_mut() {
                *h = response.headers().clone();
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, opentelemetry_http::HttpError>(out.body(bytes::Bytes::from(body))?)
        });
        task.await?
    }
}
