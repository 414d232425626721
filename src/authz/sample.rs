//! The Istio sample ext-authz server's answers (reference/ext-authz.md §4, checklist 44–46),
//! for `compat.istio_sample = true`. The decision itself is an ordinary `header` rule
//! (`x-ext-authz: allow`, every path); this file only dresses the outcome the way the sample
//! does, so Istio's, ASM's and kgateway's walkthroughs pass unchanged.

use http::{HeaderName, HeaderValue, StatusCode};

use crate::authz::decision::{Body, Reply};
use crate::authz::input::CheckInput;
use crate::authz::rules::RawRule;
use crate::identity::header_value;

/// The header the sample decides on and the value that allows.
pub const CHECK_HEADER: &str = "x-ext-authz";
pub const ALLOW_VALUE: &str = "allow";
const RESULT: HeaderName = HeaderName::from_static("x-ext-authz-check-result");
const RECEIVED: HeaderName = HeaderName::from_static("x-ext-authz-check-received");
const OVERRIDE: HeaderName = HeaderName::from_static("x-ext-authz-additional-header-override");
/// The sample's deny body, byte for byte (76 bytes).
pub const DENY_BODY: &str =
    "denied by ext_authz for not found header `x-ext-authz: allow` in the request";
/// The received-request echo is cut here (the sample cuts at 60 000; Envoy's header limit is
/// 60 KiB for all headers together).
const MAX_RECEIVED: usize = 8 * 1024;

/// The preset as a rule: every request is decided by the `x-ext-authz` header.
pub fn rule() -> RawRule {
    RawRule {
        action: "header".into(),
        header: Some(crate::authz::rules::RawHeaderMatch {
            name: CHECK_HEADER.into(),
            value: ALLOW_VALUE.into(),
        }),
        ..RawRule::default()
    }
}

/// The sample's gRPC server, when the request has no `x-ext-authz` header at all, allows a
/// peer whose principal ends with `/sa/<allow_service_account>` (Istio mTLS identity).
pub fn grpc_principal_allows(input: &CheckInput, allow_service_account: &str) -> bool {
    input.adapter == "grpc"
        && !input.headers.contains_key(CHECK_HEADER)
        && input.service_account().map(|(_, sa)| sa) == Some(allow_service_account)
}

/// Headers the sample adds on an allow (they go to the upstream).
pub fn allow_headers(input: &CheckInput) -> Vec<(HeaderName, HeaderValue)> {
    common(input, "allowed")
}

/// The sample's denial: 403, the fixed text body and the same three headers.
pub fn deny_reply(input: &CheckInput) -> Reply {
    let mut r = Reply::new(StatusCode::FORBIDDEN, Body::text(DENY_BODY));
    r.headers.extend(common(input, "denied"));
    r.reason = Some("rule_header");
    r
}

/// The log line the sample writes: `[HTTP][allowed]: GET host/path`.
pub fn log_line(input: &CheckInput, allowed: bool) -> String {
    format!(
        "[{}][{}]: {} {}{}",
        if input.adapter == "grpc" {
            "gRPCv3"
        } else {
            "HTTP"
        },
        if allowed { "allowed" } else { "denied" },
        input.method,
        input.host,
        input.path_and_query()
    )
}

fn common(input: &CheckInput, result: &'static str) -> Vec<(HeaderName, HeaderValue)> {
    // The sample's HTTP server echoes the request's value; its gRPC server sends a fixed one.
    let override_value = if input.adapter == "grpc" {
        "grpc-additional-header-override-value"
    } else {
        input
            .header("x-ext-authz-additional-header-override")
            .unwrap_or_default()
    };
    vec![
        (RESULT, HeaderValue::from_static(result)),
        (OVERRIDE, header_value(override_value)),
        (RECEIVED, header_value(&received(input))),
    ]
}

/// A one-line summary of the request the check received, bounded.
fn received(input: &CheckInput) -> String {
    let mut names: Vec<String> = input
        .headers
        .iter()
        .filter(|(n, _)| *n != http::header::COOKIE && *n != http::header::AUTHORIZATION)
        .map(|(n, v)| format!("{}:{}", n, v.to_str().unwrap_or("!")))
        .collect();
    names.sort();
    let mut s = format!(
        "{} {}{}, headers: [{}], body: []",
        input.method,
        input.host,
        input.path_and_query(),
        names.join(" ")
    );
    if s.len() > MAX_RECEIVED {
        let mut cut = MAX_RECEIVED;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, Method};

    fn input(headers: &[(&str, &str)]) -> CheckInput {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).expect("n"),
                HeaderValue::from_str(v).expect("v"),
            );
        }
        CheckInput::new(Method::GET, "httpbin.foo:8000", "/headers", h, "r".into())
    }

    #[test]
    fn deny_is_the_samples_76_byte_body() {
        assert_eq!(DENY_BODY.len(), 76);
        let r = deny_reply(&input(&[("x-ext-authz", "deny")]));
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.body.text, DENY_BODY);
        assert!(r
            .headers
            .iter()
            .any(|(n, v)| n == "x-ext-authz-check-result" && v == "denied"));
    }

    #[test]
    fn allow_echoes_the_override_and_never_cookies() {
        let i = input(&[
            ("x-ext-authz", "allow"),
            ("x-ext-authz-additional-header-override", "from-client"),
            ("cookie", "secret=1"),
        ]);
        let h = allow_headers(&i);
        let get = |n: &str| {
            h.iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.to_str().expect("a"))
        };
        assert_eq!(get("x-ext-authz-check-result"), Some("allowed"));
        assert_eq!(
            get("x-ext-authz-additional-header-override"),
            Some("from-client")
        );
        let received = get("x-ext-authz-check-received").expect("received");
        assert!(
            received.starts_with("GET httpbin.foo:8000/headers"),
            "{received}"
        );
        assert!(!received.contains("secret"));
        assert_eq!(
            log_line(&i, true),
            "[HTTP][allowed]: GET httpbin.foo:8000/headers"
        );
    }

    #[test]
    fn grpc_falls_back_to_the_service_account() {
        let mut i = input(&[]);
        i.adapter = "grpc";
        for (principal, allowed) in [
            (Some("spiffe://cluster.local/ns/foo/sa/a"), true),
            (Some("spiffe://cluster.local/ns/foo/sa/b"), false),
            (Some("spiffe://cluster.local/ns/foo/sa/a/extra"), false),
            (Some("spiffe://cluster.local/sa/a"), false),
            (Some("not-a-spiffe-id/sa/a"), false),
            (None, false),
        ] {
            i.principal = principal.map(str::to_string);
            assert_eq!(grpc_principal_allows(&i, "a"), allowed, "{principal:?}");
        }
        // A present header decides alone, and HTTP never falls back.
        i.principal = Some("spiffe://cluster.local/ns/foo/sa/a".into());
        i.headers
            .insert(CHECK_HEADER, HeaderValue::from_static("deny"));
        assert!(!grpc_principal_allows(&i, "a"));
        let mut h = input(&[]);
        h.principal = Some("spiffe://cluster.local/ns/foo/sa/a".into());
        assert!(!grpc_principal_allows(&h, "a"));
        // The gRPC sample sends a fixed override value.
        i.headers.clear();
        let headers = allow_headers(&i);
        assert!(headers
            .iter()
            .any(|(n, v)| n == "x-ext-authz-additional-header-override"
                && v == "grpc-additional-header-override-value"));
    }
}
