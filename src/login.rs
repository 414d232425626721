//! The proxy's own routes under `server.proxy_prefix`: `start`, `callback`, `sign_in`,
//! `sign_out`, `userinfo`. Protocol-neutral: they arrive directly or as a check on the
//! application's host, and answer with an `Outcome` any adapter can render. Only `userinfo`
//! with a valid session is an allow; everything else is a non-200 reply, so a gateway never
//! lets an unauthenticated request through to the upstream because it hit one of these paths.

use http::StatusCode;
use serde_json::json;

use crate::app::App;
use crate::authz::decision::{Allow, Body, Outcome, Reply, BEARER_INVALID_STATUS};
use crate::authz::input::CheckInput;
use crate::error::Error;
use crate::identity;
use crate::oidc;
use crate::pages::{SignIn, SignedOut};
use crate::redirect::ReturnTo;
use crate::token::bearer::BearerError;

/// One of our routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Start,
    Callback,
    SignIn,
    SignOut,
    SignedOut,
    UserInfo,
    /// OIDC Back-Channel Logout: the IdP POSTs straight to portcullis (`http::backchannel`);
    /// through a check the body is not available.
    BackchannelLogout,
    /// Under the prefix but not a route we have.
    Unknown,
}

impl Route {
    /// A metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Start => "start",
            Route::Callback => "callback",
            Route::SignIn => "sign_in",
            Route::SignOut => "sign_out",
            Route::SignedOut => "signed_out",
            Route::UserInfo => "userinfo",
            Route::BackchannelLogout => "backchannel_logout",
            Route::Unknown => "unknown",
        }
    }
}

impl Route {
    /// Whether the route answers a person with a page (HTML, or JSON for an API client) rather
    /// than deciding about a request: everything but `userinfo` (an allow with a session) and
    /// `backchannel_logout` (server to server). "The login routes answer pages; checks answer
    /// decisions": a failure on such a route (the IdP unreachable or slow during a callback,
    /// discovery not done, the session store down at sign-out) is shown to the browser as its
    /// 502/503 page. The gRPC adapter sends it as a `denied_response` (Envoy passes its
    /// status); over HTTP ext_authz a 5xx is an authz error whatever its body, so the page
    /// reaches the browser only when the gateway routes the proxy prefix straight to
    /// portcullis (config/envoy/envoy-http.yaml). A failure on an ordinary check stays an
    /// error, so the gateway's `failure_mode_allow` / `status_on_error` decides.
    pub fn answers_page(self) -> bool {
        !matches!(self, Route::UserInfo | Route::BackchannelLogout)
    }
}

/// The route of ours that a check is for, when our routes answer it: under the proxy prefix,
/// `server.path_prefix` present, not nginx's `/auth` and not an unreadable forwarded request.
pub fn own_route(prefix: &str, input: &CheckInput) -> Option<Route> {
    if input.path_prefix_ok && input.own_routes && input.unreadable.is_none() {
        route(prefix, &input.path)
    } else {
        None
    }
}

/// Which of our routes `path` names, if it is under `prefix` at all.
pub fn route(prefix: &str, path: &str) -> Option<Route> {
    let rest = path.strip_prefix(prefix)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    Some(match rest.trim_end_matches('/') {
        "/start" => Route::Start,
        "/callback" => Route::Callback,
        "/sign_in" => Route::SignIn,
        "/sign_out" => Route::SignOut,
        "/signed_out" => Route::SignedOut,
        "/userinfo" => Route::UserInfo,
        "/backchannel_logout" => Route::BackchannelLogout,
        _ => Route::Unknown,
    })
}

/// Answer one of our routes.
pub async fn handle(app: &App, route: Route, input: &CheckInput) -> Result<Outcome, Error> {
    let reply = match route {
        Route::Start => {
            let return_to = app.return_to(input.query_param("rd").as_deref());
            // `prompt=login` ("Sign in with a different account"): the IdP must show its form
            // even if its session is alive. Other values are ignored.
            let force_login = input.query_param("prompt").as_deref() == Some("login");
            oidc::start::start(app, input, &return_to, force_login)?
        }
        Route::Callback => oidc::callback::callback(app, input).await?,
        Route::SignOut => oidc::logout::sign_out(app, input).await?,
        Route::SignIn => {
            let return_to = app.return_to(input.query_param("rd").as_deref());
            sign_in_page(app, input, &return_to)
        }
        Route::SignedOut => signed_out(app, input),
        Route::UserInfo => return userinfo(app, input).await,
        // Reached through a gateway's check (no body) or with a method other than POST.
        Route::BackchannelLogout => oidc::backchannel::logout(app, None).await?.into_reply(),
        Route::Unknown => app.error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such page.",
            input,
        ),
    };
    Ok(Outcome::Reply(reply))
}

/// The sign-in page whose button starts a login back to `return_to`. Served as 401 rather than
/// 200: through a gateway a 200 would be an allow.
pub fn sign_in_page(app: &App, input: &CheckInput, return_to: &ReturnTo) -> Reply {
    let html = app.pages.sign_in(&SignIn {
        provider_name: &app.config.pages.provider_name,
        proxy_prefix: &app.config.server.proxy_prefix,
        redirect: return_to.as_str(),
        footer: &app.config.pages.footer,
        request_id: input.request_id.as_str(),
    });
    app.page_reply(StatusCode::UNAUTHORIZED, html)
}

/// Where sign-out lands by default: "you're signed out", with a way back in (to `rd`, else
/// `/`). 401 like the sign-in page, never 200.
fn signed_out(app: &App, input: &CheckInput) -> Reply {
    let return_to = app.return_to(input.query_param("rd").as_deref());
    let html = app.pages.signed_out(&SignedOut {
        proxy_prefix: &app.config.server.proxy_prefix,
        redirect: return_to.as_str(),
        footer: &app.config.pages.footer,
    });
    app.page_reply(StatusCode::UNAUTHORIZED, html)
}

/// The signed-in user as JSON (an allow, with the identity headers), or 401 JSON. The session
/// is refreshed (or ended) as for any check.
async fn userinfo(app: &App, input: &CheckInput) -> Result<Outcome, Error> {
    let now = app.clock.now();
    let loaded = app.sessions.load(input, now).await?;
    let (session, cookies) = crate::oidc::refresh::refresh(app, input, loaded, now).await?;
    Ok(match session {
        Some(s) => Outcome::Allow(Allow {
            headers: identity::upstream_headers(&s, &app.config.headers),
            set_cookies: cookies,
            body: Some(Body::json(&json!({
                "user": s.user,
                "email": s.email,
                "preferredUsername": s.preferred_username,
                "groups": s.groups,
            }))),
        }),
        None => Outcome::Reply(unauthorized_json(app, input).with_cookies(cookies)),
    })
}

/// 401 JSON for callers that cannot follow a login redirect.
pub fn unauthorized_json(app: &App, input: &CheckInput) -> Reply {
    let mut r = Reply::new(
        StatusCode::UNAUTHORIZED,
        Body::json(&json!({
            "error": "unauthorized",
            "message": "authentication required",
            "sign_in": format!("{}/start", app.config.server.proxy_prefix),
            "request_id": input.request_id.as_str(),
        })),
    );
    r.headers.push((
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    ));
    r
}

/// 401 for a bearer token that failed verification (RFC 6750 §3.1). `reason` is one of a fixed
/// set of short texts, never token data.
pub fn bearer_unauthorized(input: &CheckInput, reason: BearerError) -> Reply {
    let mut r = Reply::new(
        BEARER_INVALID_STATUS,
        Body::json(&json!({
            "error": "invalid_token",
            "message": reason.as_str(),
            "request_id": input.request_id.as_str(),
        })),
    );
    let challenge = format!(
        "Bearer error=\"invalid_token\", error_description=\"{}\"",
        reason.as_str()
    );
    if let Ok(v) = http::HeaderValue::from_str(&challenge) {
        r.headers.push((http::header::WWW_AUTHENTICATE, v));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_table() {
        let cases = [
            ("/oauth2/start", Some(Route::Start)),
            ("/oauth2/callback", Some(Route::Callback)),
            ("/oauth2/callback/", Some(Route::Callback)),
            ("/oauth2/sign_in", Some(Route::SignIn)),
            ("/oauth2/sign_out", Some(Route::SignOut)),
            ("/oauth2/signed_out", Some(Route::SignedOut)),
            ("/oauth2/userinfo", Some(Route::UserInfo)),
            ("/oauth2/backchannel_logout", Some(Route::BackchannelLogout)),
            ("/oauth2", Some(Route::Unknown)),
            ("/oauth2/", Some(Route::Unknown)),
            ("/oauth2/nope", Some(Route::Unknown)),
            ("/oauth2x/start", None),
            ("/app/oauth2/start", None),
            ("/", None),
            ("/healthz", None),
        ];
        for (path, want) in cases {
            assert_eq!(route("/oauth2", path), want, "{path}");
        }
    }

    #[test]
    fn every_route_but_userinfo_and_backchannel_answers_a_page() {
        use Route::*;
        for r in [Start, Callback, SignIn, SignOut, SignedOut, Unknown] {
            assert!(r.answers_page(), "{r:?}");
        }
        for r in [UserInfo, BackchannelLogout] {
            assert!(!r.answers_page(), "{r:?}");
        }
    }

    #[test]
    fn own_route_needs_the_path_prefix_and_own_routes() {
        let input = |path: &str| {
            CheckInput::new(
                http::Method::GET,
                "h",
                path,
                http::HeaderMap::new(),
                "rid".into(),
            )
        };
        assert_eq!(
            own_route("/oauth2", &input("/oauth2/callback?code=x")),
            Some(Route::Callback)
        );
        assert_eq!(own_route("/oauth2", &input("/app")), None);
        let mut i = input("/oauth2/callback");
        i.path_prefix_ok = false;
        assert_eq!(own_route("/oauth2", &i), None);
        let mut i = input("/oauth2/start");
        i.own_routes = false;
        assert_eq!(own_route("/oauth2", &i), None);
        let mut i = input("/oauth2/start");
        i.unreadable = Some(crate::authz::decision::DenyReason::PathPrefixMissing);
        assert_eq!(own_route("/oauth2", &i), None);
    }

    #[test]
    fn bearer_unauthorized_is_a_401_challenge() {
        let input = CheckInput::new(
            http::Method::GET,
            "h",
            "/x",
            http::HeaderMap::new(),
            "rid".into(),
        );
        let r = bearer_unauthorized(&input, BearerError::Expired);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let challenge = r
            .headers
            .iter()
            .find(|(n, _)| n == http::header::WWW_AUTHENTICATE)
            .map(|(_, v)| v.to_str().expect("ascii"));
        assert_eq!(
            challenge,
            Some("Bearer error=\"invalid_token\", error_description=\"token expired\"")
        );
        assert!(r.location().is_none());
    }
}
