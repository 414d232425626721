//! The floor for check benchmarks: an HTTP server that answers every request with 200 and the
//! same identity headers portcullis sends on an allow, and does nothing else. Whatever
//! portcullis costs beyond this is the cost of deciding.
//!
//!   cargo run --release --example floor -- 127.0.0.1:4199

use std::net::SocketAddr;

use axum::http::{HeaderName, HeaderValue};
use axum::response::IntoResponse;

async fn allow() -> impl IntoResponse {
    let h = |n: &'static str, v: &'static str| {
        (HeaderName::from_static(n), HeaderValue::from_static(v))
    };
    [
        h("x-auth-request-user", "alice"),
        h("x-auth-request-email", "alice@example.com"),
        h("x-auth-request-preferred-username", "alice"),
        h("x-auth-request-groups", ""),
        h(
            "x-envoy-auth-headers-to-remove",
            "x-auth-request-access-token",
        ),
    ]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4199".into())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, axum::Router::new().fallback(allow)).await?;
    Ok(())
}
