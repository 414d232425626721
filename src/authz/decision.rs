//! What the core decides (`Decision`) and what the adapters render (`Outcome`). Every
//! `DenyReason` maps to one HTTP status here; adapters never choose statuses themselves.

use http::{HeaderName, HeaderValue, StatusCode};

use crate::redirect::ReturnTo;
use crate::token::bearer::BearerError;

/// The pure decision for one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A valid session that passes the policy.
    Allow,
    /// No valid session: log in first, then come back to `return_to`. `api` callers get 401.
    Login { return_to: ReturnTo, api: bool },
    /// Refused whatever the caller does next.
    Deny(DenyReason),
    /// The request's bearer token failed verification: 401 with `WWW-Authenticate: Bearer
    /// error="invalid_token"` (RFC 6750 §3.1), never a login redirect.
    BearerInvalid(BearerError),
}

/// The one HTTP status of [`Decision::BearerInvalid`].
pub const BEARER_INVALID_STATUS: StatusCode = StatusCode::UNAUTHORIZED;

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The session's email is outside `authz.email_domains`.
    EmailDomain,
    /// The session has none of `authz.allowed_groups`.
    Group,
    /// A `server.path_prefix` is configured but the check request lacked it: the gateway and
    /// portcullis disagree, so nothing can be trusted about the path.
    PathPrefixMissing,
}

impl DenyReason {
    /// The one HTTP status for this reason.
    pub fn status(self) -> StatusCode {
        StatusCode::FORBIDDEN
    }

    /// A short machine-readable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::EmailDomain => "email_domain",
            DenyReason::Group => "group",
            DenyReason::PathPrefixMissing => "path_prefix_missing",
        }
    }

    /// What the user is told.
    pub fn message(self) -> &'static str {
        match self {
            DenyReason::EmailDomain => "Your account's email domain is not allowed here.",
            DenyReason::Group => "Your account is not in a group that is allowed here.",
            DenyReason::PathPrefixMissing => {
                "The gateway is not configured the way portcullis expects."
            }
        }
    }
}

/// What an adapter renders: an allow (HTTP 200 / gRPC OK) or any other answer.
#[derive(Debug, Clone)]
pub enum Outcome {
    Allow(Allow),
    Reply(Reply),
}

/// An allow: headers for the upstream request, cookies for the client, an optional body (Envoy
/// ignores the body of an allow; a browser talking to portcullis directly sees it).
#[derive(Debug, Clone, Default)]
pub struct Allow {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub set_cookies: Vec<String>,
    pub body: Option<Body>,
}

/// Any answer that is not an allow: a redirect, a login-required, a denial, an error page, a
/// page of ours. Its status is never 200, so a gateway can never read it as an allow.
#[derive(Debug, Clone)]
pub struct Reply {
    status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub set_cookies: Vec<String>,
    pub body: Body,
}

/// A response body with its content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub content_type: &'static str,
    pub text: String,
}

impl Body {
    pub fn html(text: String) -> Self {
        Self {
            content_type: "text/html; charset=utf-8",
            text,
        }
    }
    pub fn json(value: &serde_json::Value) -> Self {
        Self {
            content_type: "application/json",
            text: value.to_string(),
        }
    }
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            content_type: "text/plain; charset=utf-8",
            text: text.into(),
        }
    }
}

impl Reply {
    /// A reply with this status. A 2xx status would read as an allow (200) or be passed to the
    /// client as a bare success (201, 204) by Envoy, so 2xx is turned into 500 here.
    pub fn new(status: StatusCode, body: Body) -> Self {
        let status = if status.is_success() {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            status
        };
        Self {
            status,
            headers: vec![(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            )],
            set_cookies: Vec::new(),
            body,
        }
    }

    /// 302 to `location` (which must already be validated).
    pub fn redirect(location: &str, set_cookies: Vec<String>) -> Self {
        let mut r = Self::new(
            StatusCode::FOUND,
            Body::html(format!(
                "<a href=\"{}\">Found</a>.\n",
                html_escape(location)
            )),
        );
        if let Ok(v) = HeaderValue::from_str(location) {
            r.headers.push((http::header::LOCATION, v));
        }
        r.set_cookies = set_cookies;
        r
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `location` header, if any.
    pub fn location(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == http::header::LOCATION)
            .and_then(|(_, v)| v.to_str().ok())
    }

    pub fn with_cookies(mut self, cookies: Vec<String>) -> Self {
        self.set_cookies.extend(cookies);
        self
    }
}

/// Minimal escaping for the few inline HTML bodies built outside templates.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_never_2xx() {
        for s in [200, 201, 204] {
            let r = Reply::new(StatusCode::from_u16(s).expect("status"), Body::text("x"));
            assert!(!r.status().is_success(), "{s}");
        }
        assert_eq!(
            Reply::new(StatusCode::FOUND, Body::text("x")).status(),
            StatusCode::FOUND
        );
    }

    #[test]
    fn redirect_sets_location_and_escapes_body() {
        let r = Reply::redirect("/a?b=\"<x>\"", vec!["c=1".into()]);
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(r.location(), Some("/a?b=\"<x>\""));
        assert!(!r.body.text.contains("<x>"));
        assert_eq!(r.set_cookies, vec!["c=1"]);
    }
}
