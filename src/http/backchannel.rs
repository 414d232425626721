//! `POST <proxy_prefix>/backchannel_logout` on the check listener: the IdP's server-to-server
//! logout call (`application/x-www-form-urlencoded`, `logout_token=…`). Parsed here, decided in
//! `oidc::backchannel`. Any other method on this path is an ordinary check.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderValue, Method};
use http_body_util::BodyExt;

use crate::app::App;
use crate::authz::decision::Outcome;
use crate::http::ext_authz;

/// Form bodies larger than this are refused unread (a logout token is a few KB).
const MAX_BODY: usize = 64 * 1024;

pub async fn handle(State(app): State<Arc<App>>, request: Request) -> Response {
    if request.method() != Method::POST {
        return ext_authz::check(State(app), request).await;
    }
    let (parts, body) = request.into_parts();
    let input = ext_authz::to_input(&app, parts);
    let form = http_body_util::Limited::new(body, MAX_BODY).collect().await;
    let token = form.ok().and_then(|b| {
        url::form_urlencoded::parse(&b.to_bytes())
            .find(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.into_owned())
    });
    let answer = match crate::oidc::backchannel::logout(&app, token.as_deref()).await {
        Ok(a) => a,
        Err(e) => return ext_authz::render(Outcome::Reply(app.error_reply(&e, &input)), false),
    };
    // Rendered here, not as a `Reply`: this is the one 200 the check listener gives that is
    // not an allow (the IdP calls it directly; through a gateway there is no body, so no 200).
    let body = answer.body();
    let mut response = Response::new(axum::body::Body::from(body.text));
    *response.status_mut() = answer.status;
    let h = response.headers_mut();
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(body.content_type),
    );
    response
}
