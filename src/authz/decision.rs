//! What the core decides (`Decision`) and what the adapters render (`Outcome`). Every
//! `DenyReason` maps to one HTTP status here; adapters never choose statuses themselves.

use http::{HeaderName, HeaderValue, StatusCode};

use crate::redirect::ReturnTo;
use crate::token::bearer::BearerError;

/// `google.rpc.Code` values used by the gRPC adapter (see [`Reply::grpc_code`]).
pub const GRPC_PERMISSION_DENIED: i32 = 7;
pub const GRPC_UNAVAILABLE: i32 = 14;
pub const GRPC_UNAUTHENTICATED: i32 = 16;
use crate::theme::STRICT_CSP;

/// The response headers every HTML page of ours carries besides its CSP; list them (with
/// `content-security-policy`) in the gateway's headers-to-client-on-deny.
pub const SECURITY_HEADERS: [&str; 5] = [
    "cache-control",
    "content-security-policy",
    "x-content-type-options",
    "referrer-policy",
    "x-frame-options",
];

/// The pure decision for one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A valid session that passes the policy.
    Allow,
    /// A public (or header-matched) route without a session: identity headers go out empty.
    AllowAnonymous,
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
    /// The path can be read as different paths by different servers (encoded slash, `%2e%2e`,
    /// NUL, …): no rule can be trusted to see what the application will act on.
    AmbiguousPath,
    /// Rule `n` has action `deny`.
    RuleDeny(usize),
    /// Rule `n` requires groups, emails, domains or claims the session lacks.
    RuleRequire(usize),
    /// Rule `n` requires a header value the request lacks.
    RuleHeader(usize),
    /// A query constraint of the check (`allowed_groups`, `allowed_emails`,
    /// `allowed_email_domains`) is not met.
    QueryConstraint,
    /// The request carries an underscore variant of an identity header
    /// (`X_Auth_Request_User`), which an upstream might read as the real one.
    SmuggledHeader,
    /// A forwarded request header from a trusted proxy (`X-Forwarded-Uri`, `-Method`,
    /// `-Proto`, `-Host`) cannot be read: nothing can be decided about the original request.
    BadForwardedHeader,
}

impl DenyReason {
    /// The one HTTP status for this reason.
    pub fn status(self) -> StatusCode {
        match self {
            DenyReason::AmbiguousPath
            | DenyReason::SmuggledHeader
            | DenyReason::BadForwardedHeader => StatusCode::BAD_REQUEST,
            _ => StatusCode::FORBIDDEN,
        }
    }

    /// The rule that decided, if one did (for logs; labels stay bounded).
    pub fn rule(self) -> Option<usize> {
        match self {
            DenyReason::RuleDeny(i) | DenyReason::RuleRequire(i) | DenyReason::RuleHeader(i) => {
                Some(i)
            }
            _ => None,
        }
    }

    /// A short machine-readable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::EmailDomain => "email_domain",
            DenyReason::Group => "group",
            DenyReason::PathPrefixMissing => "path_prefix_missing",
            DenyReason::AmbiguousPath => "ambiguous_path",
            DenyReason::RuleDeny(_) => "rule_deny",
            DenyReason::RuleRequire(_) => "rule_require",
            DenyReason::RuleHeader(_) => "rule_header",
            DenyReason::QueryConstraint => "query_constraint",
            DenyReason::SmuggledHeader => "smuggled_header",
            DenyReason::BadForwardedHeader => "bad_forwarded_header",
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
            DenyReason::AmbiguousPath => "This address cannot be used: its path is ambiguous.",
            DenyReason::RuleDeny(_) | DenyReason::RuleHeader(_) => {
                "Access to this page is not allowed."
            }
            DenyReason::RuleRequire(_) | DenyReason::QueryConstraint => {
                "Your account does not have access to this page."
            }
            DenyReason::SmuggledHeader => {
                "The request carries a header that imitates an identity header."
            }
            DenyReason::BadForwardedHeader => {
                "The proxy in front of portcullis sent a forwarded header that cannot be read."
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
    /// Why this is a denial, for metrics and logs (`None` for logins and pages).
    pub reason: Option<&'static str>,
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
            reason: None,
            headers: vec![
                (
                    http::header::CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                ),
                (
                    http::header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(STRICT_CSP),
                ),
                (
                    http::header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (
                    http::header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ),
                (
                    http::header::X_FRAME_OPTIONS,
                    HeaderValue::from_static("DENY"),
                ),
            ],
            set_cookies: Vec::new(),
            body,
        }
    }

    /// An HTML page of ours, served with `csp` (see [`crate::theme::page_csp`]) instead of the
    /// policy that allows nothing.
    pub fn page(status: StatusCode, html: String, csp: &str) -> Self {
        let mut r = Self::new(status, Body::html(html));
        if let Ok(v) = HeaderValue::from_str(csp) {
            r.set_header(http::header::CONTENT_SECURITY_POLICY, v);
        }
        r
    }

    /// Replace (or add) one header.
    pub fn set_header(&mut self, name: HeaderName, value: HeaderValue) {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value));
    }

    /// 302 to `location` (which must already be validated).
    pub fn redirect(location: &str, set_cookies: Vec<String>) -> Self {
        let mut body = String::with_capacity(location.len() + 32);
        body.push_str("<a href=\"");
        html_escape_into(&mut body, location);
        body.push_str("\">Found</a>.\n");
        let mut r = Self::new(StatusCode::FOUND, Body::html(body));
        if let Ok(v) = HeaderValue::from_str(location) {
            r.headers.push((http::header::LOCATION, v));
        }
        r.set_cookies = set_cookies;
        r
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `google.rpc.Code` a gRPC ext_authz answer carries for this reply: UNAUTHENTICATED
    /// (16) for 401 and redirects (log in, come back), UNAVAILABLE (14) for 5xx (an error, so
    /// Envoy's failure mode applies as it does to the HTTP adapter's 5xx), PERMISSION_DENIED
    /// (7) for every other refusal. Never 0: a reply is never an allow.
    pub fn grpc_code(&self) -> i32 {
        if self.status == StatusCode::UNAUTHORIZED || self.status.is_redirection() {
            GRPC_UNAUTHENTICATED
        } else if self.status.is_server_error() {
            GRPC_UNAVAILABLE
        } else {
            GRPC_PERMISSION_DENIED
        }
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
    let mut out = String::with_capacity(s.len() + 16);
    html_escape_into(&mut out, s);
    out
}

/// [`html_escape`] appending to `out`. The text between special characters is copied as whole
/// runs (a redirect's URL has hardly any), not pushed char by char; all five are ASCII, so every
/// run ends on a char boundary.
fn html_escape_into(out: &mut String, s: &str) {
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        let entity = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.push_str(&s[run..i]);
        out.push_str(entity);
        run = i + 1;
    }
    out.push_str(&s[run..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escaping() {
        for (raw, want) in [
            ("", ""),
            ("plain /a?b=1", "plain /a?b=1"),
            ("<a href=\"x\">&'", "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"),
            ("caf\u{e9} <\u{1F600}>", "caf\u{e9} &lt;\u{1F600}&gt;"),
            ("&&", "&amp;&amp;"),
        ] {
            assert_eq!(html_escape(raw), want, "{raw:?}");
        }
    }

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
    fn grpc_codes_by_status() {
        let cases = [
            (302, GRPC_UNAUTHENTICATED),
            (303, GRPC_UNAUTHENTICATED),
            (401, GRPC_UNAUTHENTICATED),
            (400, GRPC_PERMISSION_DENIED),
            (403, GRPC_PERMISSION_DENIED),
            (404, GRPC_PERMISSION_DENIED),
            (502, GRPC_UNAVAILABLE),
            (503, GRPC_UNAVAILABLE),
            (200, GRPC_UNAVAILABLE), // a 2xx reply is turned into 500
        ];
        for (status, code) in cases {
            let r = Reply::new(
                StatusCode::from_u16(status).expect("status"),
                Body::text(""),
            );
            assert_eq!(r.grpc_code(), code, "{status}");
        }
    }

    #[test]
    fn every_reply_carries_the_security_headers() {
        let r = Reply::redirect("/x", vec![]);
        for name in SECURITY_HEADERS {
            assert!(r.headers.iter().any(|(n, _)| n == name), "{name}");
        }
        let csp = |r: &Reply| {
            r.headers
                .iter()
                .filter(|(n, _)| n == http::header::CONTENT_SECURITY_POLICY)
                .map(|(_, v)| v.to_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(csp(&r), vec![STRICT_CSP.to_string()]);
        let p = Reply::page(StatusCode::UNAUTHORIZED, "<p>".into(), "default-src 'none'");
        assert_eq!(
            csp(&p),
            vec!["default-src 'none'".to_string()],
            "replaced, not added"
        );
        assert_eq!(p.body.content_type, "text/html; charset=utf-8");
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
