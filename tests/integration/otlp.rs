//! OTLP export (cargo feature `otlp`): the real binary sends its `check` spans to a small
//! OTLP/HTTP receiver, and each exported span joins the caller's trace named by `traceparent`.
//!
//! Run with `cargo test --features otlp --test integration otlp`.

use crate::support::{free_port, Child};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use prost::Message;

/// The parts of OTLP's `ExportTraceServiceRequest` this test reads (field numbers from
/// opentelemetry/proto/trace/v1/trace.proto and common/v1/common.proto), decoded independently
/// of the exporter's own generated types.
mod otlp_proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportTraceServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_spans: Vec<ResourceSpans>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceSpans {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_spans: Vec<ScopeSpans>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeSpans {
        #[prost(message, repeated, tag = "2")]
        pub spans: Vec<Span>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub span_id: Vec<u8>,
        #[prost(string, tag = "3")]
        pub trace_state: String,
        #[prost(bytes = "vec", tag = "4")]
        pub parent_span_id: Vec<u8>,
        #[prost(string, tag = "5")]
        pub name: String,
        #[prost(int32, tag = "6")]
        pub kind: i32,
        #[prost(message, repeated, tag = "9")]
        pub attributes: Vec<KeyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(oneof = "Value", tags = "1, 2, 3, 4")]
        pub value: Option<Value>,
    }
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        String(String),
        #[prost(bool, tag = "2")]
        Bool(bool),
        #[prost(int64, tag = "3")]
        Int(i64),
        #[prost(double, tag = "4")]
        Double(f64),
    }
}

use otlp_proto::{ExportTraceServiceRequest, KeyValue, Value};

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn check_spans_are_exported_inside_the_callers_trace() {
    // The receiver: OTLP/HTTP with protobuf bodies, as a collector's port 4318 takes them.
    let received: Arc<Mutex<Vec<(String, Bytes)>>> = Arc::default();
    let sink = received.clone();
    let receiver = axum::Router::new().route(
        "/v1/traces",
        post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let ct = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                sink.lock().unwrap().push((ct, body));
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let (http, grpc, admin) = (free_port(), free_port(), free_port());
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["serve", "--set", "compat.istio_sample=true"])
            .env_remove("PORTCULLIS_CONFIG")
            .env(
                "PORTCULLIS_SERVER__HTTP_ADDRESS",
                format!("127.0.0.1:{http}"),
            )
            .env(
                "PORTCULLIS_SERVER__GRPC_ADDRESS",
                format!("127.0.0.1:{grpc}"),
            )
            .env(
                "PORTCULLIS_SERVER__ADMIN_ADDRESS",
                format!("127.0.0.1:{admin}"),
            )
            // Discovery fails at once and is retried in the background; the sample preset
            // answers without the IdP.
            .env("PORTCULLIS_OIDC__ISSUER_URL", "http://127.0.0.1:9/")
            .env("PORTCULLIS_OIDC__CLIENT_ID", "app")
            .env("PORTCULLIS_OIDC__CLIENT_SECRET", "s")
            .env(
                "PORTCULLIS_COOKIE__SECRET",
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            )
            // A bare address: portcullis appends /v1/traces.
            .env(
                "PORTCULLIS_TRACING__OTLP_ENDPOINT",
                format!("http://{collector}"),
            )
            .env("PORTCULLIS_TRACING__SERVICE_NAME", "portcullis-under-test")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn portcullis"),
    );
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .get(format!("http://127.0.0.1:{admin}/healthz"))
        .send()
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(Instant::now() < deadline, "portcullis did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Three checks: inside a sampled trace, inside an unsampled one, and without one.
    let sampled_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let unsampled_trace = "0af7651916cd43dd8448eb211c80319c";
    let check = |request_id: &'static str, traceparent: Option<String>| {
        let mut req = client
            .get(format!("http://127.0.0.1:{http}/headers"))
            .header("x-ext-authz", "allow")
            .header("x-request-id", request_id);
        if let Some(tp) = traceparent {
            req = req
                .header("traceparent", tp)
                .header("tracestate", "vendor=opaque");
        }
        req.send()
    };
    let r = check(
        "req-sampled",
        Some(format!("00-{sampled_trace}-{caller_span}-01")),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = check(
        "req-unsampled",
        Some(format!("00-{unsampled_trace}-b7ad6b7169203331-00")),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = check("req-root", None).await.unwrap();
    assert_eq!(r.status(), 200);
    // Over gRPC (Envoy's envoy_grpc mode forwards every header in the CheckRequest).
    let grpc_trace = "5b8efff798038103d269b633813fc60c";
    let grpc_caller = "eee19b7ec3c1b174";
    grpc_check(
        grpc,
        &[
            ("x-ext-authz", "allow"),
            ("x-request-id", "req-grpc"),
            ("traceparent", &format!("00-{grpc_trace}-{grpc_caller}-01")),
        ],
    )
    .await;

    // SIGTERM: a graceful stop flushes the spans still batched.
    let pid = child.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "portcullis did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(status.success(), "exit {status:?}: {stderr}");

    let bodies = received.lock().unwrap().clone();
    assert!(
        !bodies.is_empty(),
        "no export reached the receiver: {stderr}"
    );
    let mut spans = Vec::new();
    for (content_type, body) in &bodies {
        assert_eq!(content_type, "application/x-protobuf");
        let req = ExportTraceServiceRequest::decode(body.as_ref()).expect("OTLP protobuf");
        for rs in req.resource_spans {
            let resource = rs.resource.unwrap_or_default();
            assert_eq!(
                attr(&resource.attributes, "service.name"),
                Some("portcullis-under-test")
            );
            spans.extend(rs.scope_spans.into_iter().flat_map(|s| s.spans));
        }
    }
    let by_request = |id: &str| {
        spans
            .iter()
            .filter(|s| s.name == "check" && attr(&s.attributes, "request_id") == Some(id))
            .collect::<Vec<_>>()
    };

    // Inside the caller's sampled trace: same trace id, the caller's span as parent.
    let joined = by_request("req-sampled");
    assert_eq!(joined.len(), 1, "{spans:#?}");
    let s = joined[0];
    assert_eq!(hex(&s.trace_id), sampled_trace);
    assert_eq!(hex(&s.parent_span_id), caller_span);
    assert_ne!(hex(&s.span_id), caller_span, "a span of its own");
    assert_eq!(s.trace_state, "vendor=opaque");
    assert_eq!(s.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(attr(&s.attributes, "trace_id"), Some(sampled_trace));
    assert_eq!(attr(&s.attributes, "adapter"), Some("http"));
    assert_eq!(attr(&s.attributes, "outcome"), Some("allow"));

    // The caller decided not to sample: nothing exported for that trace.
    assert!(by_request("req-unsampled").is_empty(), "{spans:#?}");
    assert!(spans.iter().all(|s| hex(&s.trace_id) != unsampled_trace));

    // No traceparent: a root span of a new trace.
    let root = by_request("req-root");
    assert_eq!(root.len(), 1, "{spans:#?}");
    assert!(root[0].parent_span_id.is_empty());
    assert_eq!(root[0].trace_id.len(), 16);
    assert_ne!(hex(&root[0].trace_id), sampled_trace);

    let over_grpc = by_request("req-grpc");
    assert_eq!(over_grpc.len(), 1, "{spans:#?}");
    assert_eq!(hex(&over_grpc[0].trace_id), grpc_trace);
    assert_eq!(hex(&over_grpc[0].parent_span_id), grpc_caller);
    assert_eq!(attr(&over_grpc[0].attributes, "adapter"), Some("grpc"));
}

/// One Check over gRPC with these request headers, expected to be allowed (status code 0).
async fn grpc_check(port: u16, headers: &[(&str, &str)]) {
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    host: "app.example.com".into(),
                    path: "/headers".into(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let answer = AuthorizationClient::new(channel)
        .check(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.status.map(|s| s.code), Some(0), "allowed over gRPC");
}
