//! The protocol-neutral core: `check` gathers the facts (our own routes, the session, the
//! bearer token's verification), asks the pure `decide`, and turns the decision into an
//! `Outcome` for the adapter to render.

pub mod decide;
pub mod decision;
pub mod input;
pub mod policy;

use crate::app::App;
use crate::error::Error;
use crate::identity;
use crate::login;
use crate::pages::SignedIn;
use crate::session::Session;
use crate::token::bearer::{self, Shape};
use crate::token::Verdict;
use decide::BearerFact;
use decision::{Allow, Body, Decision, Outcome};
use input::CheckInput;

/// Answer one check. `Err` only for infrastructure failures (rendered as 5xx).
pub async fn check(app: &App, input: &CheckInput) -> Result<Outcome, Error> {
    if input.path_prefix_ok {
        if let Some(route) = login::route(&app.config.server.proxy_prefix, &input.path) {
            return login::handle(app, route, input).await;
        }
    }
    let now = app.clock.now();
    let session = app.sessions.load(input, now);
    let (bearer, token) = bearer_fact(app, input, now).await?;
    let decision = decide::decide(input, session.as_ref(), &bearer, &app.policy, now);
    // The identity behind an allow: the verified token's (as a transient session carrying the
    // caller's own token for the optional headers), else the cookie session's.
    let via_bearer = matches!(bearer, BearerFact::Verified(_));
    let identity = match (&bearer, token) {
        (BearerFact::Verified(t), Some(raw)) => Some(Session {
            id: String::new(),
            user: t.user.clone(),
            email: t.email.clone(),
            preferred_username: t.preferred_username.clone(),
            groups: t.groups.clone(),
            id_token: Some(raw.to_string()),
            access_token: Some(raw.to_string()),
            created_at: now,
            expires_at: t.expires_at,
        }),
        _ => session,
    };
    match (decision, identity) {
        (Decision::Allow, Some(s)) => {
            let page = app.config.pages.signed_in_page && !input.is_api() && !via_bearer;
            let body = page.then(|| {
                Body::html(app.pages.signed_in(&SignedIn {
                    user: &s.user,
                    email: &s.email,
                    groups: &s.groups,
                    proxy_prefix: &app.config.server.proxy_prefix,
                    footer: &app.config.pages.footer,
                }))
            });
            Ok(Outcome::Allow(Allow {
                headers: identity::upstream_headers(&s, &app.config.headers),
                set_cookies: Vec::new(),
                body,
            }))
        }
        (Decision::Allow, None) => Err(Error::Internal("allow without a session".into())),
        (Decision::BearerInvalid(reason), _) => {
            tracing::info!(request_id = %input.request_id, reason = reason.as_str(), "bearer token refused");
            Ok(Outcome::Reply(login::bearer_unauthorized(input, reason)))
        }
        (Decision::Login { api: true, .. }, _) => {
            Ok(Outcome::Reply(login::unauthorized_json(app, input)))
        }
        (Decision::Login { return_to, .. }, _) => Ok(Outcome::Reply(crate::oidc::start::start(
            app, input, &return_to,
        )?)),
        (Decision::Deny(reason), _) => {
            if reason == decision::DenyReason::PathPrefixMissing {
                tracing::error!(
                    request_id = %input.request_id,
                    path_prefix = %app.config.server.path_prefix,
                    "check request lacks server.path_prefix: the gateway's path_prefix and portcullis disagree"
                );
            } else {
                tracing::info!(request_id = %input.request_id, reason = reason.as_str(), "denied");
            }
            let reply = app.error_page(reason.status(), "Access denied", reason.message(), input);
            // A session the policy refuses is dropped, so signing in as someone else works.
            let clear = if reason == decision::DenyReason::PathPrefixMissing || via_bearer {
                Vec::new()
            } else {
                app.sessions.clear(input)
            };
            Ok(Outcome::Reply(reply.with_cookies(clear)))
        }
    }
}

/// The bearer credential's fact, and the raw token when it verified. `Err` only when the
/// token's issuer is configured but its keys never loaded (503, so the gateway's failure mode
/// applies).
async fn bearer_fact<'a>(
    app: &App,
    input: &'a CheckInput,
    now: i64,
) -> Result<(BearerFact, Option<&'a str>), Error> {
    let Some(bearers) = app.bearers.as_ref() else {
        return Ok((BearerFact::Absent, None));
    };
    let Some(token) = input.bearer_token() else {
        return Ok((BearerFact::Absent, None));
    };
    match bearer::shape(token) {
        Shape::Opaque if app.config.bearer.ignore_opaque_tokens => {
            return Ok((BearerFact::Absent, None))
        }
        Shape::Opaque => return Ok((BearerFact::Invalid(bearer::BearerError::Malformed), None)),
        Shape::Bad(e) => return Ok((BearerFact::Invalid(e), None)),
        Shape::Jws => {}
    }
    match bearers.verify(token, now).await {
        Verdict::Verified(v) => Ok((BearerFact::Verified(v), Some(token))),
        Verdict::Rejected(e) => Ok((BearerFact::Invalid(e), None)),
        Verdict::KeysUnavailable(issuer) => Err(Error::ProviderNotReady(format!(
            "keys of bearer issuer {issuer} are not loaded"
        ))),
    }
}
