//! The protocol-neutral core: `check` gathers the facts (our own routes, the session), asks the
//! pure `decide`, and turns the decision into an `Outcome` for the adapter to render.

pub mod decide;
pub mod decision;
pub mod input;
pub mod policy;

use crate::app::App;
use crate::config::LoginMode;
use crate::error::Error;
use crate::identity;
use crate::login;
use crate::pages::SignedIn;
use crate::redirect;
use decision::{Allow, Body, Decision, Outcome};
use input::CheckInput;

/// Answer one check. `Err` only for infrastructure failures (rendered as 5xx). Every adapter
/// calls this, so metrics and the per-check log line are the same for all of them.
pub async fn check(app: &App, input: &CheckInput) -> Result<Outcome, Error> {
    let started = std::time::Instant::now();
    let result = answer(app, input).await;
    let (outcome, reason) = classify(app, input, &result);
    let took = started.elapsed();
    app.metrics.decision(input.adapter, outcome, reason, took);
    tracing::debug!(
        request_id = %input.request_id,
        adapter = input.adapter,
        method = %input.method,
        host = %input.host,
        path = %input.path,
        outcome,
        reason,
        duration_us = took.as_micros() as u64,
        "check"
    );
    result
}

/// Bounded labels for an answer: (outcome, reason).
fn classify(
    app: &App,
    input: &CheckInput,
    result: &Result<Outcome, Error>,
) -> (&'static str, &'static str) {
    if input.path_prefix_ok {
        if let Some(route) = login::route(&app.config.server.proxy_prefix, &input.path) {
            return ("route", route.as_str());
        }
    }
    match result {
        Err(e) => ("error", e.kind()),
        Ok(Outcome::Allow(_)) => ("allow", "session"),
        Ok(Outcome::Reply(r)) => match (r.reason, r.status().as_u16()) {
            (Some(reason), _) => ("deny", reason),
            (None, 302) => ("login", "redirect"),
            (None, 401) if r.body.content_type.starts_with("text/html") => ("login", "page"),
            (None, 401) => ("login", "api"),
            (None, s) if s >= 500 => ("error", "reply"),
            (None, _) => ("deny", "other"),
        },
    }
}

async fn answer(app: &App, input: &CheckInput) -> Result<Outcome, Error> {
    if input.path_prefix_ok {
        if let Some(route) = login::route(&app.config.server.proxy_prefix, &input.path) {
            return login::handle(app, route, input).await;
        }
    }
    let now = app.clock.now();
    let session = app.sessions.load(input, now);
    let decision = decide::decide(input, session.as_ref(), &app.policy, now);
    match (decision, session) {
        (Decision::Allow, Some(s)) => {
            let mut headers = identity::upstream_headers(&s, &app.config.headers);
            let body = (app.config.pages.signed_in_page && !input.is_api()).then(|| {
                // Only when portcullis is browsed directly does this page reach a browser; it
                // gets the same security headers as every other page.
                let page = app.page_reply(http::StatusCode::UNAUTHORIZED, String::new());
                headers.extend(page.headers);
                Body::html(app.pages.signed_in(&SignedIn {
                    user: &s.user,
                    email: &s.email,
                    groups: &s.groups,
                    proxy_prefix: &app.config.server.proxy_prefix,
                    footer: &app.config.pages.footer,
                }))
            });
            Ok(Outcome::Allow(Allow {
                headers,
                set_cookies: Vec::new(),
                body,
            }))
        }
        (Decision::Allow, None) => Err(Error::Internal("allow without a session".into())),
        (Decision::Login { api: true, .. }, _) => {
            Ok(Outcome::Reply(login::unauthorized_json(app, input)))
        }
        (Decision::Login { return_to, .. }, _) => match app.config.pages.login_mode {
            LoginMode::Redirect => Ok(Outcome::Reply(crate::oidc::start::start(
                app, input, &return_to, false,
            )?)),
            LoginMode::Page => Ok(Outcome::Reply(login::sign_in_page(app, input, &return_to))),
        },
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
            let return_to = redirect::validate(&input.path_and_query(), &[])
                .unwrap_or_else(redirect::ReturnTo::root);
            let reply = app.denied_page(reason, input, &return_to);
            // A session the policy refuses is dropped, so signing in as someone else works.
            let clear = if reason == decision::DenyReason::PathPrefixMissing {
                Vec::new()
            } else {
                app.sessions.clear(input)
            };
            Ok(Outcome::Reply(reply.with_cookies(clear)))
        }
    }
}
