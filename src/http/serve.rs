//! Serving the check listener with hyper directly: Envoy may forward up to 100 header fields
//! and 60 KiB of headers (its defaults), more than hyper accepts by default, and a gateway's
//! keep-alive connection must never be closed for being idle. HTTP/1.1 and h2c (prior
//! knowledge) are both served, with graceful shutdown. Every request carries its connection's
//! peer address (`axum::extract::ConnectInfo<SocketAddr>`): forwarded headers are read only
//! from peers in `server.trusted_proxies`.
//!
//! Resource limits (`server.max_*`, docs/configuration.md "Resource limits"):
//! * a request head over `max_header_bytes` gets **431**. hyper bounds what it buffers
//!   (`max_buf_size`, and h2's SETTINGS_MAX_HEADER_LIST_SIZE), but it only checks the buffer
//!   while a head is still incomplete: a head that arrives whole in one read is parsed whatever
//!   its size. So every parsed request is also measured ([`head_size`]) and answered 431 when
//!   over the limit, which makes the limit exact on HTTP/1.1 too;
//! * a forwarded body over `max_body_bytes` gets **413** (`ext_authz::check`);
//! * a connection beyond `max_connections` open ones is served a **503** (`connection: close`)
//!   for each request and closed, so Envoy's failure mode applies instead of a hang; past a
//!   further [`OVERLOAD_CONNECTIONS`] such connections new ones are closed at once;
//! * an h2 connection carries at most `max_concurrent_streams` streams at a time (advertised
//!   in SETTINGS; a client that opens more gets REFUSED_STREAM).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::service::service_fn;
use tower::Service;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Header fields accepted per request (hyper's default is 100; Envoy's limit is 100, plus the
/// few it adds itself).
pub const MAX_HEADERS: usize = 256;
/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(30);
/// Connections over `max_connections` that are answered 503 at the same time; beyond this they
/// are closed without an answer.
pub const OVERLOAD_CONNECTIONS: usize = 64;
/// How long an over-the-limit connection is kept to deliver its 503s.
const OVERLOAD_LINGER: Duration = Duration::from_secs(5);

/// The check listener's limits (from `server.*`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub max_concurrent_streams: u32,
}

impl Limits {
    pub fn from_config(server: &crate::config::ServerConfig) -> Self {
        Self {
            max_header_bytes: server.max_header_bytes,
            max_connections: server.max_connections,
            max_concurrent_streams: server.max_concurrent_streams,
        }
    }
}

/// Serve `router` on `listener` until `shutdown` resolves, then drain.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_headers(MAX_HEADERS)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.max_concurrent_streams);
    let mut overload_builder = Builder::new(TokioExecutor::new());
    overload_builder
        .http1()
        .max_headers(MAX_HEADERS)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(false);
    overload_builder
        .http2()
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.max_concurrent_streams);
    let overload_builder = Arc::new(overload_builder);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let overloaded = Arc::new(Semaphore::new(OVERLOAD_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    let Ok(permit) = overloaded.clone().try_acquire_owned() else {
                        tracing::warn!("connection limit and overload backlog reached; closing a new connection");
                        drop(stream);
                        continue;
                    };
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached; answering 503"
                    );
                    let builder = overload_builder.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(|_req| async {
                            Ok::<_, Infallible>(overloaded_response())
                        });
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        let _ = tokio::time::timeout(OVERLOAD_LINGER, conn).await;
                        drop(permit);
                    });
                    continue;
                };
                let service = with_peer(router.clone(), peer, limits.max_header_bytes);
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    drop(permit);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain period; closing them");
    }
    Ok(())
}

/// The router as a hyper service whose requests carry `ConnectInfo(peer)`.
fn with_peer(
    router: axum::Router,
    peer: SocketAddr,
    max_header_bytes: usize,
) -> impl hyper::service::Service<
    http::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    service_fn(move |mut request: http::Request<Incoming>| {
        let too_large = head_size(&request) > max_header_bytes;
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        async move {
            if too_large {
                return Ok(headers_too_large_response());
            }
            router.call(request).await
        }
    })
}

/// The size of a request's head as HTTP/1.1 puts it on the wire: the request line
/// (`METHOD target HTTP/1.1` and CRLF), each `name: value` line with its CRLF, and the blank
/// line. h2 heads are measured the same way (HPACK sizes differ, but the limit is about what
/// portcullis is asked to hold and read, not about framing).
pub fn head_size<B>(request: &http::Request<B>) -> usize {
    let target = request
        .uri()
        .path_and_query()
        .map_or(1, |pq| pq.as_str().len());
    let line = request.method().as_str().len() + 1 + target + 1 + "HTTP/1.1\r\n".len();
    let fields: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    line + fields + 2
}

/// The answer to a head over `server.max_header_bytes`.
fn headers_too_large_response() -> http::Response<axum::body::Body> {
    let body = "request header fields too large\n";
    let mut r = http::Response::new(axum::body::Body::from(body));
    *r.status_mut() = http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The answer on a connection over the limit: 503, so Envoy applies its failure mode (and
/// retries another replica when configured to).
fn overloaded_response() -> http::Response<axum::body::Body> {
    let body = "service unavailable: too many connections\n";
    let mut r = http::Response::new(axum::body::Body::from(body));
    *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    h.insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("1"),
    );
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::head_size;

    #[test]
    fn head_size_counts_the_request_line_every_field_and_the_blank_line() {
        let request = http::Request::get("/a?b=c")
            .header("host", "app")
            .header("cookie", "x=1")
            .body(())
            .unwrap();
        let wire = "GET /a?b=c HTTP/1.1\r\nhost: app\r\ncookie: x=1\r\n\r\n";
        assert_eq!(head_size(&request), wire.len());
    }
}
