//! Sign out: end the session server-side (Redis store: its record is deleted; cookie store with
//! Redis: it is deny-listed), expire every session cookie and, when the IdP offers an `end_session_endpoint`,
//! continue with RP-initiated logout (`id_token_hint`, `post_logout_redirect_uri`). Without a
//! (valid) `rd` the browser lands on `<prefix>/signed_out`, the "you're signed out" page.

use crate::app::App;
use crate::authz::decision::Reply;
use crate::authz::input::CheckInput;
use crate::error::Error;
use crate::redirect::{self, ReturnTo};
use crate::session::Target;

/// 302 to the validated `rd` (or the signed-out page), through the IdP's logout when it has one.
/// `Err` (503) when the session could not be ended server-side: the cookie is then kept, so the
/// user sees the failure and can retry instead of believing they are signed out.
pub async fn sign_out(app: &App, input: &CheckInput) -> Result<Reply, Error> {
    let now = app.clock.now();
    let session = app.sessions.load(input, now).await?;
    if let Some(s) = &session {
        app.sessions
            .revoke(&Target::SessionId(s.id.clone()))
            .await?;
    }
    let cookies = app.sessions.clear(input);
    let prefix = &app.config.server.proxy_prefix;
    let return_to = input
        .query_param("rd")
        .and_then(|rd| redirect::validate(&rd, &app.config.authz.redirect_domains))
        .or_else(|| redirect::validate(&format!("{prefix}/signed_out"), &[]))
        .unwrap_or_else(ReturnTo::root);
    let origin = input.origin(app.default_scheme());
    let mut location = return_to.as_str().to_string();
    if let (Ok(provider), Some(id_token)) = (
        app.oidc.provider(),
        session.as_ref().and_then(|s| s.id_token.as_deref()),
    ) {
        if let Some(end_session) = &provider.end_session_endpoint {
            let mut url = end_session.clone();
            url.query_pairs_mut()
                .append_pair("id_token_hint", id_token)
                .append_pair("post_logout_redirect_uri", &return_to.absolute(&origin))
                .append_pair("client_id", &app.config.oidc.client_id);
            location = url.to_string();
        }
    }
    if let Some(s) = &session {
        tracing::info!(request_id = %input.request_id, session_id = %s.id, user = %app.log_users.show(&s.user), "signed out");
    }
    Ok(Reply::redirect(&location, cookies))
}
