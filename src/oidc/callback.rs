//! Finish a login: match `state` to a pending-login cookie (constant time), exchange the code
//! with the PKCE verifier, verify the ID token (signature, iss, aud, exp, nonce), fill missing
//! claims from userinfo, apply the policy, and set the session cookie.

use std::borrow::Cow;

use http::StatusCode;
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, Nonce, OAuth2TokenResponse, PkceCodeVerifier,
    RedirectUrl, RequestTokenError,
};

use crate::app::App;
use crate::authz::decision::Reply;
use crate::authz::input::CheckInput;
use crate::error::Error;
use crate::oidc::{chain, Claims, IdTokenClaims, Oidc, Provider, UserInfoClaims};
use crate::session::{random_id, PendingLogin, Session};

/// Handle `<prefix>/callback`. Caller's faults are 403 pages; IdP failures are `Err` (502).
pub async fn callback(app: &App, input: &CheckInput) -> Result<Reply, Error> {
    let result = finish(app, input).await;
    app.metrics.login(match &result {
        Ok(r) if r.status() == StatusCode::FOUND => "succeeded",
        Ok(r) if r.reason.is_some() => "refused",
        Ok(_) => "failed",
        Err(_) => "error",
    });
    result
}

async fn finish(app: &App, input: &CheckInput) -> Result<Reply, Error> {
    let now = app.clock.now();
    let state = input.query_param("state").unwrap_or_default();
    let clear_pending: Vec<String> = app
        .sessions
        .clear_pending(&state, input)
        .into_iter()
        .collect();
    let refuse = |title: &str, message: &str| {
        app.error_page(StatusCode::FORBIDDEN, title, message, input)
            .with_cookies(clear_pending.clone())
    };

    if let Some(error) = input.query_param("error") {
        // Only the short error code is shown; `error_description` is IdP-controlled text.
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        tracing::info!(request_id = %input.request_id, idp_error = %code, "identity provider refused the sign-in");
        return Ok(refuse(
            "Sign-in was not completed",
            &format!("The identity provider answered: {code}."),
        ));
    }
    if state.is_empty() {
        return Ok(refuse(
            "Sign-in failed",
            "The sign-in response has no state.",
        ));
    }
    let Some(code) = input.query_param("code").filter(|c| !c.is_empty()) else {
        return Ok(refuse(
            "Sign-in failed",
            "The sign-in response has no code.",
        ));
    };
    let (pending, _) = app.sessions.take_pending(&state, input, now);
    let Some(pending) = pending else {
        tracing::info!(request_id = %input.request_id, "callback without a matching pending login");
        return Ok(refuse(
            "Sign-in expired or was started elsewhere",
            "This sign-in does not match one started in this browser, or it took too long. Please sign in again.",
        ));
    };

    // From here on "Try again" restarts the login towards the page the user first asked for.
    let back = app.return_to(Some(&pending.return_to));
    let refuse = |title: &str, message: &str| {
        app.error_page_to(StatusCode::FORBIDDEN, title, message, input, &back)
            .with_cookies(clear_pending.clone())
    };

    let provider = app.oidc.provider()?;
    let token = match exchange(&provider, app, &pending, code).await {
        Ok(t) => t,
        Err(Exchange::Rejected(kind)) => {
            tracing::info!(request_id = %input.request_id, error = %kind, "authorization code rejected");
            return Ok(refuse(
                "Sign-in failed",
                "The identity provider rejected the sign-in code (it may have been used already). Please sign in again.",
            ));
        }
        Err(Exchange::Failed(e)) => return Err(e),
    };
    let Some(id_token) = token.extra_fields().id_token() else {
        return Err(Error::Idp("token response has no id_token".into()));
    };
    let claims = match verify(app, &provider, id_token, &pending).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(request_id = %input.request_id, error = %e, "id token rejected");
            return Ok(refuse(
                "Sign-in failed",
                "The identity token could not be verified.",
            ));
        }
    };

    let cfg = &app.config.oidc;
    let mut claims_view = Claims {
        id_token: &claims,
        userinfo: None,
    };
    let missing = claims_view.text(&cfg.email_claim).is_none()
        || claims_view.list(&cfg.groups_claim).is_empty()
        || claims_view.text(&cfg.user_claim).is_none();
    let userinfo: Option<UserInfoClaims> = if missing {
        fetch_userinfo(&provider, app, &token, &claims).await?
    } else {
        None
    };
    claims_view.userinfo = userinfo.as_ref();

    let Some(user) = claims_view.text(&cfg.user_claim).filter(|u| !u.is_empty()) else {
        return Ok(refuse(
            "Sign-in failed",
            "The identity provider did not say who you are.",
        ));
    };
    let email = claims_view.text(&cfg.email_claim).unwrap_or_default();
    if claims_view.email_verified() == Some(false) && !cfg.allow_unverified_email {
        tracing::info!(request_id = %input.request_id, user = %app.log_users.show(&user), "login refused: email not verified");
        let mut reply = refuse(
            "Email address not verified",
            "The identity provider says your email address is not verified. Verify it there, then sign in again.",
        );
        reply.reason = Some("email_unverified");
        return Ok(reply);
    }
    let groups = claims_view.list(&cfg.groups_claim);
    if let Err(reason) = app.policy.authorize(&email, &groups) {
        tracing::info!(request_id = %input.request_id, user = %app.log_users.show(&user), reason = reason.as_str(), "signed-in user refused by policy");
        return Ok(app
            .denied_page(reason, input, &back)
            .with_cookies(clear_pending.clone()));
    }
    let session = Session {
        id: random_id(),
        user,
        email,
        preferred_username: claims_view.text("preferred_username").unwrap_or_default(),
        groups,
        id_token: Some(id_token.to_string()),
        access_token: app
            .config
            .headers
            .pass_access_token
            .then(|| token.access_token().secret().clone()),
        created_at: now,
        expires_at: now + app.sessions.expire_secs(),
        claims: app
            .policy
            .claim_names
            .iter()
            .filter_map(|n| claims_view.json(n).map(|v| (n.clone(), v)))
            .collect(),
        subject: claims.subject().as_str().to_string(),
        sid: claims
            .additional_claims()
            .0
            .get("sid")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        refresh_token: token
            .refresh_token()
            .filter(|_| app.config.cookie.store_refresh_token)
            .map(|t| t.secret().clone()),
        tokens_expire_at: crate::oidc::refresh::tokens_expire_at(
            now,
            token.expires_in(),
            Some(claims.expiration().timestamp()),
        ),
        refreshed_at: 0,
    };
    let mut cookies = app.sessions.save(&session, input).await?;
    cookies.extend(clear_pending.iter().cloned());
    tracing::info!(request_id = %input.request_id, session_id = %session.id, user = %app.log_users.show(&session.user), "signed in");
    Ok(Reply::redirect(&pending.return_to, cookies))
}

enum Exchange {
    /// The IdP answered with an OAuth error (invalid_grant …): a bad, reused or expired code.
    Rejected(String),
    /// The IdP could not be reached or answered nonsense.
    Failed(Error),
}

async fn exchange(
    provider: &Provider,
    app: &App,
    pending: &PendingLogin,
    code: String,
) -> Result<crate::oidc::TokenResponse, Exchange> {
    let redirect = RedirectUrl::new(pending.redirect_url.clone())
        .map_err(|e| Exchange::Failed(Error::Internal(format!("stored redirect url: {e}"))))?;
    let request = provider
        .client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| Exchange::Failed(Error::Idp(format!("no token endpoint: {e}"))))?
        .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
        .set_redirect_uri(Cow::Owned(redirect));
    let started = std::time::Instant::now();
    let result = request.request_async(&app.oidc.http).await;
    let status = match &result {
        Ok(_) => "ok",
        Err(RequestTokenError::ServerResponse(_)) => "rejected",
        Err(_) => "error",
    };
    app.metrics.idp("token", status, started.elapsed());
    result.map_err(|e| match e {
        RequestTokenError::ServerResponse(r) => Exchange::Rejected(r.error().to_string()),
        other => Exchange::Failed(Error::Idp(format!("token request: {}", chain(&other)))),
    })
}

/// Verify the ID token against the provider's keys; on a signature failure the keys are
/// re-fetched once (the IdP may have rotated them) and verification retried.
async fn verify(
    app: &App,
    provider: &Provider,
    id_token: &crate::oidc::IdToken,
    pending: &PendingLogin,
) -> Result<IdTokenClaims, ClaimsVerificationError> {
    let nonce = Nonce::new(pending.nonce.clone());
    let clock = app.clock.clone();
    let verifier = provider
        .client
        .id_token_verifier()
        .set_time_fn(move || clock.now_utc());
    match id_token.claims(&verifier, &nonce) {
        Ok(c) => Ok(c.clone()),
        Err(ClaimsVerificationError::SignatureVerification(e)) => {
            if app.oidc.refresh_keys().await {
                if let Ok(fresh) = app.oidc.provider() {
                    let clock = app.clock.clone();
                    let verifier = fresh
                        .client
                        .id_token_verifier()
                        .set_time_fn(move || clock.now_utc());
                    return id_token.claims(&verifier, &nonce).cloned();
                }
            }
            Err(ClaimsVerificationError::SignatureVerification(e))
        }
        Err(e) => Err(e),
    }
}

async fn fetch_userinfo(
    provider: &Provider,
    app: &App,
    token: &crate::oidc::TokenResponse,
    claims: &IdTokenClaims,
) -> Result<Option<UserInfoClaims>, Error> {
    fetch_userinfo_with(&app.oidc, provider, token, claims).await
}

/// The userinfo claims for `token` (`None` when the IdP has no userinfo endpoint).
pub(crate) async fn fetch_userinfo_with(
    oidc: &Oidc,
    provider: &Provider,
    token: &crate::oidc::TokenResponse,
    claims: &IdTokenClaims,
) -> Result<Option<UserInfoClaims>, Error> {
    let Ok(request) = provider
        .client
        .user_info(token.access_token().clone(), Some(claims.subject().clone()))
    else {
        // No userinfo endpoint: the ID token is all there is.
        return Ok(None);
    };
    let started = std::time::Instant::now();
    let result = request.request_async(&oidc.http).await;
    oidc.metrics.idp(
        "userinfo",
        if result.is_ok() { "ok" } else { "error" },
        started.elapsed(),
    );
    result
        .map(Some)
        .map_err(|e| Error::Idp(format!("userinfo request: {}", chain(&e))))
}
