//! The protocol-neutral core: `check` gathers the facts (our own routes, the session, the
//! bearer token's verification), asks the pure `decide`, and turns the decision into an
//! `Outcome` for the adapter to render.

pub mod decide;
pub mod decision;
pub mod input;
pub mod path;
pub mod policy;
pub mod rules;
pub mod sample;

use std::sync::Arc;

use crate::app::App;
use crate::config::LoginMode;
use crate::error::Error;
use crate::identity;
use crate::login;
use crate::pages::SignedIn;
use crate::redirect;
use crate::session::Session;
use crate::token::bearer::{self, Shape};
use crate::token::Verdict;
use decide::BearerFact;
use decision::{Allow, Body, Decision, Outcome};
use input::CheckInput;

/// Answer one check. `Err` only for infrastructure failures (rendered as 5xx). Every adapter
/// calls this, so metrics and the per-check log line are the same for all of them.
pub async fn check(app: &App, input: &CheckInput) -> Result<Outcome, Error> {
    use tracing::Instrument;
    let started = std::time::Instant::now();
    // When the gateway propagates W3C trace context, every log line of this check carries the
    // trace id (and the request id), so logs join the mesh's traces; with OTLP export the span
    // is exported as a child of the caller's (`traceparent`). Without either, the span is
    // debug-level: each log line names its request id itself, and formatting an info span's
    // fields was about a tenth of a valid-cookie check's instructions (bench/README.md).
    macro_rules! check_span {
        ($level:ident) => {
            tracing::$level!(
                "check",
                request_id = %input.request_id,
                trace_id = input.trace_id().unwrap_or_default(),
                adapter = input.adapter,
                otel.kind = "server",
                outcome = tracing::field::Empty,
                reason = tracing::field::Empty,
            )
        };
    }
    let span = if input.trace_id().is_some() || app.config.tracing.otlp_endpoint.is_some() {
        check_span!(info_span)
    } else {
        check_span!(debug_span)
    };
    crate::telemetry::join_caller_trace(&span, input);
    let result = answer(app, input).instrument(span.clone()).await;
    let (outcome, reason) = classify(app, input, &result);
    span.record("outcome", outcome);
    span.record("reason", reason);
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
    if input.path_prefix_ok && input.own_routes {
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

/// `compat.istio_sample`: the header rule decides, the sample's answers are rendered.
fn istio_sample(app: &App, input: &CheckInput) -> Outcome {
    let decision = decide::decide(
        input,
        None,
        &decide::BearerFact::Absent,
        &app.policy,
        app.clock.now(),
    );
    let allowed = matches!(decision, Decision::AllowAnonymous | Decision::Allow)
        || sample::grpc_principal_allows(
            input,
            &app.config.compat.istio_sample_allow_service_account,
        );
    tracing::info!(request_id = %input.request_id, "{}", sample::log_line(input, allowed));
    if allowed {
        let mut headers =
            identity::upstream_headers(&crate::session::Session::anonymous(), &app.config.headers);
        headers.extend(sample::allow_headers(input));
        Outcome::Allow(Allow {
            headers,
            set_cookies: Vec::new(),
            body: None,
        })
    } else {
        Outcome::Reply(sample::deny_reply(input))
    }
}

async fn answer(app: &App, input: &CheckInput) -> Result<Outcome, Error> {
    if app.config.compat.istio_sample {
        return Ok(istio_sample(app, input));
    }
    if let Some(route) = login::own_route(&app.config.server.proxy_prefix, input) {
        // Boxed: the login routes' future (token exchange, userinfo, store) is kilobytes;
        // inline it would be copied with every check's future (bench/README.md, profile).
        return Box::pin(login::handle(app, route, input)).await;
    }
    let now = app.clock.now();
    let session = app.sessions.load(input, now).await?;
    let (bearer, token) = bearer_fact(app, input, now).await?;
    // Refresh a session only when it will be used: not behind a verified (or refused) bearer
    // token. `session_cookies` carry the refreshed session, or clear an ended one.
    let cookie_path = matches!(bearer, BearerFact::Absent)
        || (app.config.bearer.fallback_to_cookie && matches!(bearer, BearerFact::Invalid(_)));
    let (session, session_cookies) = if cookie_path {
        crate::oidc::refresh::refresh(app, input, session, now).await?
    } else {
        (session, Vec::new())
    };
    let decision = decide::decide(input, session.as_deref(), &bearer, &app.policy, now);
    // The identity behind an allow: the verified token's (as a transient session carrying the
    // caller's own token for the optional headers), else the cookie session's.
    let via_bearer = matches!(bearer, BearerFact::Verified(_));
    let identity = match (&bearer, token) {
        (BearerFact::Verified(t), Some(raw)) => Some(Arc::new(Session {
            id: String::new(),
            user: t.user.clone(),
            email: t.email.clone(),
            preferred_username: t.preferred_username.clone(),
            groups: t.groups.clone(),
            id_token: Some(raw.to_string()),
            access_token: Some(raw.to_string()),
            created_at: now,
            expires_at: t.expires_at,
            claims: Default::default(),
            subject: String::new(),
            sid: None,
            refresh_token: None,
            tokens_expire_at: None,
            refreshed_at: 0,
        })),
        _ => session,
    };
    match (decision, identity) {
        (Decision::Allow, Some(s)) => {
            let mut headers = identity::upstream_headers(&s, &app.config.headers);
            let page = app.config.pages.signed_in_page && !input.is_api() && !via_bearer;
            let body = page.then(|| {
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
                set_cookies: session_cookies,
                body,
            }))
        }
        (Decision::AllowAnonymous, _) | (Decision::Allow, None) => Ok(Outcome::Allow(Allow {
            headers: identity::upstream_headers(&Session::anonymous(), &app.config.headers),
            set_cookies: session_cookies,
            body: None,
        })),
        (Decision::BearerInvalid(reason), _) => {
            tracing::info!(request_id = %input.request_id, reason = reason.as_str(), "bearer token refused");
            let mut reply = login::bearer_unauthorized(input, reason);
            reply.reason = Some("bearer_invalid");
            Ok(Outcome::Reply(reply))
        }
        (Decision::Login { api: true, .. }, _) => Ok(Outcome::Reply(
            login::unauthorized_json(app, input).with_cookies(session_cookies),
        )),
        (Decision::Login { return_to, .. }, _) => {
            let reply = match app.config.pages.login_mode {
                LoginMode::Redirect => crate::oidc::start::start(app, input, &return_to, false)?,
                LoginMode::Page => login::sign_in_page(app, input, &return_to),
            };
            Ok(Outcome::Reply(reply.with_cookies(session_cookies)))
        }
        (Decision::Deny(reason), who) => {
            if reason == decision::DenyReason::PathPrefixMissing {
                tracing::error!(
                    request_id = %input.request_id,
                    path_prefix = %app.config.server.path_prefix,
                    "check request lacks server.path_prefix: the gateway's path_prefix and portcullis disagree"
                );
            } else {
                tracing::info!(
                    request_id = %input.request_id,
                    reason = reason.as_str(),
                    rule = reason.rule(),
                    user = who.as_ref().map(|s| app.log_users.show(&s.user)),
                    "denied"
                );
            }
            let return_to = redirect::validate(&input.path_and_query(), &[])
                .unwrap_or_else(redirect::ReturnTo::root);
            let mut reply = app.denied_page(reason, input, &return_to);
            reply.reason = Some(reason.as_str());
            // A session the global policy refuses is dropped, so signing in as someone else
            // works; a route-specific refusal keeps it (the user may still use other pages),
            // and a refused bearer token leaves the cookie alone.
            let clear = if !via_bearer
                && matches!(
                    reason,
                    decision::DenyReason::EmailDomain | decision::DenyReason::Group
                ) {
                app.sessions.clear(input)
            } else {
                session_cookies
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async fn returns, from the fn item alone.
    fn future_size<A, B, F>(_: impl Fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A check's future is moved (copied) several times per request: into the instrumented
    /// future, into the handler's box. The login routes, a token refresh and Redis lookups are
    /// boxed where they are awaited so that their kilobytes are not part of it: it was over
    /// 12 KiB, copied four times per check (bench/README.md, profile).
    #[test]
    fn the_check_future_stays_small() {
        let check = future_size::<&App, &CheckInput, _>(check);
        let answer = future_size::<&App, &CheckInput, _>(answer);
        assert!(check <= 4096, "authz::check's future is {check} bytes");
        assert!(answer <= 4096, "authz::answer's future is {answer} bytes");
    }
}
