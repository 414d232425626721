//! Begin a login: a 302 to the IdP's authorization endpoint (state, nonce, PKCE S256) and a
//! pending-login cookie bound to that state.

use std::borrow::Cow;

use openidconnect::core::{CoreAuthPrompt, CoreAuthenticationFlow};
use openidconnect::{CsrfToken, Nonce, PkceCodeChallenge, RedirectUrl, Scope};

use crate::app::App;
use crate::authz::decision::Reply;
use crate::authz::input::CheckInput;
use crate::error::Error;
use crate::redirect::ReturnTo;
use crate::session::PendingLogin;

/// Answer with a redirect to the IdP that will come back to `return_to` once signed in.
/// `force_login` sends `prompt=login`: the IdP shows its login form even with a live session.
pub fn start(
    app: &App,
    input: &CheckInput,
    return_to: &ReturnTo,
    force_login: bool,
) -> Result<Reply, Error> {
    let provider = app.oidc.provider()?;
    let redirect_url = match app.redirect_url(input) {
        Ok(u) => u,
        Err(reply) => return Ok(*reply),
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let redirect = RedirectUrl::from_url(redirect_url.clone());
    let mut request = provider
        .client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge)
        .set_redirect_uri(Cow::Owned(redirect));
    // openidconnect always sends "openid" itself.
    for scope in app.config.oidc.scopes.iter().filter(|s| *s != "openid") {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    for (k, v) in &app.config.oidc.extra_auth_params {
        if force_login && k == "prompt" {
            continue;
        }
        request = request.add_extra_param(k.as_str(), v.as_str());
    }
    if force_login {
        request = request.add_prompt(CoreAuthPrompt::Login);
    }
    let (url, state, nonce) = request.url();
    let now = app.clock.now();
    let pending = PendingLogin {
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
        return_to: return_to.as_str().to_string(),
        redirect_url: redirect_url.to_string(),
        created_at: now,
        created_us: app.clock.now_us(),
    };
    let cookies = app.sessions.save_pending(&pending, input, now)?;
    app.metrics.login("started");
    tracing::debug!(request_id = %input.request_id, "login started");
    Ok(Reply::redirect(url.as_str(), cookies))
}
