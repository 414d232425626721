//! A gRPC ext_authz load generator: `CONNECTIONS` HTTP/2 connections, each with `STREAMS`
//! calls in flight, sending the same `Check` (GET /app with the given headers) for `SECONDS`,
//! the way Envoy reuses its connections to an authorization server. Prints requests/s,
//! p50/p99/p99.9 latency and how many answers were not an allow.
//!
//!   cargo run --release --example grpc_load -- http://127.0.0.1:4198 \
//!       [SECONDS=10] [CONNECTIONS=2] [STREAMS=25] ['cookie: _portcullis=…' …]

use std::time::{Duration, Instant};

use envoy_types::ext_authz::v3::pb::{CheckRequest, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use tonic::transport::Endpoint;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:4198".into());
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let connections: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2);
    let streams: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(25);
    let mut headers: std::collections::HashMap<String, String> =
        [("accept".to_string(), "application/json".to_string())].into();
    for h in args {
        let (k, v) = h
            .split_once(": ")
            .ok_or_else(|| anyhow::anyhow!("header {h:?} is not 'name: value'"))?;
        headers.insert(k.to_ascii_lowercase(), v.to_string());
    }
    let request = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    host: "app.example.com".into(),
                    path: "/app".into(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let channel = Endpoint::from_shared(url.clone())?.connect().await?;
        for _ in 0..streams {
            let mut client = AuthorizationClient::new(channel.clone());
            let request = request.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut refused = 0u64;
                while Instant::now() < until {
                    let t = Instant::now();
                    let answer = client.check(request.clone()).await;
                    latencies.push(t.elapsed());
                    let allowed = matches!(
                        answer.map(|r| r.into_inner().http_response),
                        Ok(Some(HttpResponse::OkResponse(_)))
                    );
                    refused += u64::from(!allowed);
                }
                (latencies, refused)
            }));
        }
    }
    let mut all = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let (l, r) = t.await?;
        all.extend(l);
        refused += r;
    }
    let took = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len().max(1)) - 1;
        all.get(i)
            .map(|d| format!("{:.2}ms", d.as_secs_f64() * 1e3))
            .unwrap_or_else(|| "-".into())
    };
    println!("requests: {}", all.len());
    println!("requests/s: {:.0}", all.len() as f64 / took);
    println!("p50: {}", pct(0.50));
    println!("p99: {}", pct(0.99));
    println!("p99.9: {}", pct(0.999));
    println!("not allowed: {refused}");
    Ok(())
}
