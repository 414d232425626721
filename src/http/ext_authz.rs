//! Envoy's HTTP ext_authz protocol (shared/reference/ext-authz.md §1): any method, any path.
//! The request-target is `path_prefix` + the original path and query; Host is the original
//! authority. 200 = allow (headers routed by Envoy's allow lists, body ignored); any other
//! non-5xx = deny passed to the client as is; 5xx = error (Envoy's failure mode applies).

use std::sync::Arc;

use axum::body::Body as AxumBody;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;

use crate::app::App;
use crate::authz::decision::{Body, Outcome};
use crate::authz::input::CheckInput;
use crate::authz::{self};

/// Answer one check. A forwarded body (Envoy's `with_request_body`) is read and dropped; one
/// over `server.max_body_bytes` is answered 413 without reading the rest.
pub async fn check(State(app): State<Arc<App>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let head = parts.method == Method::HEAD;
    if let Some(too_large) = drain_within_limit(&app, &parts, body).await {
        return too_large;
    }
    let input = to_input(&app, parts);
    match authz::check(&app, &input).await {
        Ok(outcome) => render(outcome, head),
        Err(e) => render(Outcome::Reply(app.error_reply(&e, &input)), head),
    }
}

/// Build the neutral input: strip `server.path_prefix`, take Host, keep the raw query. The
/// request's headers move into the input (no copy).
pub fn to_input(app: &App, parts: http::request::Parts) -> CheckInput {
    let target = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let prefix = &app.config.server.path_prefix;
    let (target, prefix_ok) = if prefix.is_empty() {
        (target, true)
    } else {
        match target.strip_prefix(prefix.as_str()) {
            Some(rest) if rest.is_empty() || rest.starts_with(['/', '?']) => (rest, true),
            _ => (target, false),
        }
    };
    let target = if target.is_empty() || target.starts_with('?') {
        format!("/{target}")
    } else {
        target.to_string()
    };
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let request_id = crate::authz::input::request_id(&parts.headers);
    let mut input = CheckInput::new(parts.method, &host, &target, parts.headers, request_id);
    input.path_prefix_ok = prefix_ok;
    input
}

/// Render an outcome: allow → exactly 200; a reply → its status, headers, one `set-cookie` line
/// per cookie, explicit content-type and content-length. HEAD gets the headers without a body.
pub fn render(outcome: Outcome, head: bool) -> Response {
    render_with(outcome, head, StatusCode::OK)
}

/// [`render`] with another status for an allow (nginx `auth_request` takes any 2xx).
pub fn render_with(outcome: Outcome, head: bool, allow_status: StatusCode) -> Response {
    let (status, headers, cookies, body) = match outcome {
        Outcome::Allow(a) => (allow_status, a.headers, a.set_cookies, a.body),
        Outcome::Reply(r) => (r.status(), r.headers, r.set_cookies, Some(r.body)),
    };
    let body = body.unwrap_or(Body {
        content_type: "text/plain; charset=utf-8",
        text: String::new(),
    });
    let len = body.text.len();
    let mut response = Response::new(if head {
        AxumBody::empty()
    } else {
        AxumBody::from(body.text)
    });
    *response.status_mut() = status;
    let h = response.headers_mut();
    // One allocation for every header of the answer instead of growing (and rehashing) twice.
    h.reserve(headers.len() + cookies.len() + 2);
    for (name, value) in headers {
        h.insert(name, value);
    }
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.append(http::header::SET_COOKIE, v);
        }
    }
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(body.content_type),
    );
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

/// Read and drop a forwarded body (Envoy's `with_request_body`, or whatever a forward-auth proxy
/// sends); `Some(413 answer)` when it is over `server.max_body_bytes`, without reading the rest.
pub(crate) async fn drain_within_limit(
    app: &App,
    parts: &http::request::Parts,
    body: AxumBody,
) -> Option<Response> {
    let max = app.config.server.max_body_bytes;
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) || !drain(body, max).await {
        tracing::info!(max_body_bytes = max, "check body over the limit: 413");
        let body = Body::text(format!(
            "payload too large: the request body is over {max} bytes\n"
        ));
        return Some(render(
            Outcome::Reply(crate::authz::decision::Reply::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                body,
            )),
            parts.method == Method::HEAD,
        ));
    }
    None
}

/// Read and drop the request body so the connection stays reusable; `false` once more than
/// `max` bytes came (the rest is left unread and hyper closes the connection after answering).
async fn drain(mut body: AxumBody, max: usize) -> bool {
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    seen = seen.saturating_add(d.len());
                }
                if seen > max {
                    return false;
                }
            }
            Err(_) => return true,
        }
    }
    true
}
