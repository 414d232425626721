//! `CheckInput`: the protocol-neutral view of one request that a gateway asks about. Adapters
//! (HTTP ext_authz, later gRPC and forward auth) build it; the core never sees wire types.

use http::{HeaderMap, HeaderName, Method};

/// One request to decide on.
#[derive(Debug, Clone)]
pub struct CheckInput {
    pub method: Method,
    /// `http`/`https` when the adapter knows it (gRPC attributes, trusted forwarded headers);
    /// `None` in Envoy's HTTP mode, where it is not sent.
    pub scheme: Option<String>,
    /// The original `:authority` / Host, e.g. `app.example.com:8443`.
    pub host: String,
    /// The original path (Envoy's `path_prefix` already removed), without the query.
    pub path: String,
    /// The raw query string, without `?`, exactly as received.
    pub query: Option<String>,
    /// The query of the check request itself, whose `allowed_groups`, `allowed_emails` and
    /// `allowed_email_domains` narrow access: the original query for Envoy (it sends the
    /// original request line), the `<proxy_prefix>/auth?…` query for forward auth, never the
    /// client's forwarded URI.
    pub constraint_query: Option<String>,
    /// Whether a path under `proxy_prefix` is answered by our own routes (`start`, `callback`,
    /// …). False on nginx's `<proxy_prefix>/auth`, whose answer nginx reads only as a status.
    pub own_routes: bool,
    /// Whether a caller without a session may be sent to the IdP (302). False on nginx's
    /// `<proxy_prefix>/auth`: nginx can only pass a status, so every login is a 401.
    pub login_redirect: bool,
    /// Request headers (names lowercase).
    pub headers: HeaderMap,
    /// Cookies from every `cookie` header, in order; Envoy joins repeated lines with `,`.
    pub cookies: Vec<(String, String)>,
    /// False when a configured `server.path_prefix` was missing from the check request.
    pub path_prefix_ok: bool,
    /// Set by an adapter that could not read the original request (a trusted proxy's
    /// unreadable `X-Forwarded-*`): the decision is this denial, whatever else holds.
    pub unreadable: Option<crate::authz::decision::DenyReason>,
    /// Request id for logs and error pages (a fresh one is made on first use).
    pub request_id: RequestId,
    /// Which adapter built this input (`http`, `grpc`, `forward`): a metrics label.
    pub adapter: &'static str,
    /// The peer's authenticated identity when the gateway knows it (gRPC `source.principal`,
    /// e.g. `spiffe://cluster.local/ns/foo/sa/curl` under Istio mTLS); `None` when unauthenticated.
    pub principal: Option<String>,
}

impl CheckInput {
    /// Build from the parts every adapter has. `target` is path plus optional `?query`.
    /// `host` and `target` are taken as `String`s when the adapter owns them (gRPC: moved,
    /// not copied) or copied from `&str`.
    pub fn new(
        method: Method,
        host: impl Into<String>,
        target: impl Into<String>,
        headers: HeaderMap,
        request_id: RequestId,
    ) -> Self {
        // The path is the target cut at its first `?`; the query is what follows it.
        let mut path = target.into();
        let query = path.find('?').map(|at| {
            let query = path[at + 1..].to_string();
            path.truncate(at);
            query
        });
        let cookies = parse_cookies(&headers);
        Self {
            method,
            scheme: None,
            host: host.into(),
            path,
            constraint_query: query.clone(),
            query,
            own_routes: true,
            login_redirect: true,
            headers,
            cookies,
            path_prefix_ok: true,
            unreadable: None,
            request_id,
            adapter: "http",
            principal: None,
        }
    }

    /// The first cookie with this name.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// First value of a header as text. `name` is a `&str` or a `HeaderName`: a constant
    /// `HeaderName` is not parsed and lowercased again on every call, as a `&str` is.
    pub fn header<K: http::header::AsHeaderName>(&self, name: K) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// One query parameter, percent-decoded (first occurrence).
    pub fn query_param(&self, name: &str) -> Option<String> {
        let q = self.query.as_deref()?;
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// One parameter of the check request's own query (see `constraint_query`).
    pub fn constraint_param(&self, name: &str) -> Option<String> {
        let q = self.constraint_query.as_deref()?;
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The name of a request header that an upstream could read as one of our identity headers
    /// although it is not spelled like one: `X_Auth_Request_User`, `x-auth_request-email`, …
    /// (oauth2-proxy GHSA-vjrc-mh2v-45x6: servers that fold `_` into `-` trust them). Case
    /// variants of the exact names are the same header in HTTP and are overwritten by the
    /// gateway; underscore variants are not, and no client has a reason to send one.
    pub fn smuggled_identity_header(&self) -> Option<&str> {
        self.headers.keys().map(|n| n.as_str()).find(|n| {
            n.contains('_')
                && crate::identity::IDENTITY_HEADERS.iter().any(|h| {
                    n.len() == h.len()
                        && n.bytes()
                            .zip(h.bytes())
                            .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
                })
        })
    }

    /// Path plus `?query` as received: the relative URL to come back to after login.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{}", self.path, q),
            None => self.path.clone(),
        }
    }

    /// Whether the caller is a program rather than a browser navigating: it would not follow a
    /// redirect to a login page, so it gets 401 JSON. Browsers send `Accept` with `text/html`
    /// on navigations; `X-Requested-With: XMLHttpRequest` and `Sec-Fetch-Mode: cors` mark
    /// scripts.
    pub fn is_api(&self) -> bool {
        const X_REQUESTED_WITH: HeaderName = HeaderName::from_static("x-requested-with");
        const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");
        if self
            .header(&X_REQUESTED_WITH)
            .is_some_and(|v| v.eq_ignore_ascii_case("xmlhttprequest"))
        {
            return true;
        }
        if self
            .header(&SEC_FETCH_MODE)
            .is_some_and(|v| v.eq_ignore_ascii_case("cors"))
        {
            return true;
        }
        let mut accept = self.headers.get_all(http::header::ACCEPT).iter().peekable();
        // No Accept at all: the gateway does not forward it (oauth2-proxy's Istio example lists
        // only `authorization` and `cookie`), so treat the caller as a browser, as oauth2-proxy
        // does; an API client that wants 401 sends any Accept without text/html.
        if accept.peek().is_none() {
            return false;
        }
        !accept.any(|v| {
            v.as_bytes()
                .windows(9)
                .any(|w| w.eq_ignore_ascii_case(b"text/html"))
        })
    }

    /// The credential of an `Authorization: Bearer <token>` header (scheme case-insensitive,
    /// RFC 6750 §2.1). Several `authorization` headers, or another scheme: none.
    pub fn bearer_token(&self) -> Option<&str> {
        let mut all = self.headers.get_all(http::header::AUTHORIZATION).iter();
        let (Some(v), None) = (all.next(), all.next()) else {
            return None;
        };
        let v = v.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
    }

    /// The namespace and service account of a SPIFFE principal
    /// (`spiffe://<trust domain>/ns/<ns>/sa/<sa>`), if the peer has one.
    pub fn service_account(&self) -> Option<(&str, &str)> {
        let p = self.principal.as_deref()?.strip_prefix("spiffe://")?;
        let mut parts = p.split('/').skip(1);
        match (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa), None)
                if !ns.is_empty() && !sa.is_empty() =>
            {
                Some((ns, sa))
            }
            _ => None,
        }
    }

    /// The W3C trace id of the request (`traceparent: 00-<trace id>-<span id>-<flags>`), so
    /// portcullis's log lines join the gateway's trace. Invalid or all-zero ids are ignored.
    pub fn trace_id(&self) -> Option<&str> {
        const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
        let tp = self.header(&TRACEPARENT)?.trim();
        let mut parts = tp.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let ok = hex(version, 2)
            && version != "ff"
            && hex(trace, 32)
            && trace.bytes().any(|b| b != b'0')
            && hex(span, 16)
            && span.bytes().any(|b| b != b'0')
            && hex(flags, 2)
            && (version != "00" || parts.next().is_none());
        ok.then_some(trace)
    }

    /// `scheme://host` of the original request; the scheme falls back to `default_scheme`.
    pub fn origin(&self, default_scheme: &str) -> String {
        format!(
            "{}://{}",
            self.scheme.as_deref().unwrap_or(default_scheme),
            self.host
        )
    }
}

/// A request's id for logs and error pages: the gateway's `x-request-id`, or a random one
/// made the first time it is used (a log line, an error page), so that a check which logs
/// nothing does not make one. Every use of one input reads the same id.
#[derive(Debug, Clone, Default)]
pub struct RequestId(std::sync::OnceLock<String>);

impl RequestId {
    /// The id (made now, once, if the request had none).
    pub fn as_str(&self) -> &str {
        self.0.get_or_init(fresh_request_id)
    }
}

impl From<String> for RequestId {
    /// This exact id (empty included: error pages then show none).
    fn from(id: String) -> Self {
        Self(std::sync::OnceLock::from(id))
    }
}

impl From<&str> for RequestId {
    fn from(id: &str) -> Self {
        Self::from(id.to_string())
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for RequestId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The request id for logs and error pages: the gateway's `x-request-id` when it is a short
/// token of letters, digits and dashes (it is echoed into pages), else a fresh random one,
/// made when first used.
pub fn request_id(headers: &HeaderMap) -> RequestId {
    // A constant name: `get` with a `&str` would parse and lowercase it on every request.
    const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
    headers
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .map(|v| RequestId::from(v.to_string()))
        .unwrap_or_default()
}

/// A random request id (16 bytes, URL-safe base64). Not a secret, so it comes from the
/// thread-local CSPRNG instead of a system call to the OS RNG on every request.
fn fresh_request_id() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Parse every `cookie` header. Browsers separate pairs with `; `; Envoy's HTTP ext_authz joins
/// repeated header lines with `,` — both separators are accepted. Each pair is parsed by the
/// `cookie` crate; unparsable pairs are skipped.
fn parse_cookies(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for value in headers.get_all(http::header::COOKIE) {
        // UTF-8 rather than `to_str`'s visible-ASCII test, which goes byte by byte over a
        // kilobytes-long session cookie; the cookie parser and the codec reject what is not
        // a cookie.
        let Ok(text) = std::str::from_utf8(value.as_bytes()) else {
            continue;
        };
        // One SIMD scan for both separators (memchr2), where a char-set split tests every
        // character of a session cookie that is kilobytes long (it was a quarter of a check's
        // instructions) and two single-char splits scan it twice.
        let ends = memchr::memchr2_iter(b';', b',', text.as_bytes()).chain([text.len()]);
        let mut start = 0;
        for end in ends {
            // Both separators are ASCII, so `start..end` are char boundaries.
            let piece = text[start..end].trim();
            start = end + 1;
            if piece.is_empty() {
                continue;
            }
            if let Ok(c) = cookie::Cookie::parse(piece) {
                out.push((c.name().to_string(), c.value().to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn input(headers: &[(&str, &str)], target: &str) -> CheckInput {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        CheckInput::new(Method::GET, "app.example.com", target, h, "rid".into())
    }

    #[test]
    fn cookies_joined_by_comma_or_semicolon_or_lines() {
        for hs in [
            vec![("cookie", "a=1,b=2")],
            vec![("cookie", "a=1; b=2")],
            vec![("cookie", "a=1"), ("cookie", "b=2")],
            vec![("cookie", " a=1 ;, b=2 ")],
        ] {
            let i = input(&hs, "/");
            assert_eq!(i.cookie("a"), Some("1"), "{hs:?}");
            assert_eq!(i.cookie("b"), Some("2"), "{hs:?}");
            assert_eq!(i.cookie("c"), None);
        }
    }

    #[test]
    fn path_and_query_are_kept_raw() {
        let i = input(&[], "/p?a=1&a=2&b=%20&c=%252F");
        assert_eq!(i.path, "/p");
        assert_eq!(i.query.as_deref(), Some("a=1&a=2&b=%20&c=%252F"));
        assert_eq!(i.path_and_query(), "/p?a=1&a=2&b=%20&c=%252F");
        assert_eq!(i.query_param("a").as_deref(), Some("1"));
        assert_eq!(i.query_param("c").as_deref(), Some("%2F"), "decoded once");
    }

    #[test]
    fn trace_ids_from_traceparent() {
        let t = |v: &str| {
            input(&[("traceparent", v)], "/")
                .trace_id()
                .map(str::to_string)
        };
        assert_eq!(
            t("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-short-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
        assert_eq!(input(&[], "/").trace_id(), None);
    }

    #[test]
    fn api_detection() {
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("accept", "text/html,application/xhtml+xml")], false),
            (&[("accept", "TEXT/HTML")], false),
            (&[("accept", "application/json")], true),
            (&[("accept", "*/*")], true),
            (&[], false),
            (
                &[
                    ("accept", "text/html"),
                    ("x-requested-with", "XMLHttpRequest"),
                ],
                true,
            ),
            (&[("accept", "text/html"), ("sec-fetch-mode", "cors")], true),
            (
                &[("accept", "text/html"), ("sec-fetch-mode", "navigate")],
                false,
            ),
        ];
        for (hs, api) in cases {
            assert_eq!(input(hs, "/").is_api(), *api, "{hs:?}");
        }
    }

    #[test]
    fn bearer_credentials() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Case] = &[
            (
                &[("authorization", "Bearer abc.def.ghi")],
                Some("abc.def.ghi"),
            ),
            (&[("authorization", "bearer  tok ")], Some("tok")),
            (&[("authorization", "BEARER tok")], Some("tok")),
            (&[("authorization", "Basic dXNlcjpwdw==")], None),
            (&[("authorization", "Bearer ")], None),
            (&[("authorization", "Bearertok")], None),
            (
                &[("authorization", "Bearer a"), ("authorization", "Bearer b")],
                None,
            ),
            (&[], None),
        ];
        for (headers, want) in cases {
            assert_eq!(input(headers, "/").bearer_token(), *want, "{headers:?}");
        }
    }
}
