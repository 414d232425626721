//! Wire ⇄ core for gRPC ext_authz: `CheckRequest` → [`CheckInput`] and [`Outcome`] →
//! `CheckResponse` (shared/reference/ext-authz.md §2, checklist 28–39). Parsing and rendering
//! only: every decision comes from `authz::check`, exactly as for the HTTP adapter.

use envoy_types::ext_authz::v3::pb::{
    CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue,
    HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::HeaderMap as PbHeaderMap;
use envoy_types::pb::google::rpc;
use http::{HeaderMap, HeaderName, Method, StatusCode};
use std::borrow::Cow;
use std::collections::HashMap;

use crate::authz::decision::{Body, Outcome, Reply, GRPC_UNAVAILABLE};
use crate::authz::input::{self, CheckInput};
use crate::identity;

/// A CheckRequest that cannot be decided on: denied (code 7, HTTP 403), never allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// No `attributes.request.http`: an empty message, or Istio's TCP (network filter) check.
    NoHttpRequest,
    /// No method, or one that is not an HTTP token.
    BadMethod,
    /// No path.
    NoPath,
}

impl Malformed {
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::NoHttpRequest => "no_http_request",
            Malformed::BadMethod => "bad_method",
            Malformed::NoPath => "no_path",
        }
    }

    /// The reply for it: a plain 403, rendered like any other denial.
    pub fn reply(self) -> Reply {
        Reply::new(
            StatusCode::FORBIDDEN,
            Body::text("forbidden: the check request carries no HTTP request to decide on\n"),
        )
    }
}

/// Build the neutral input. Method, host, path and scheme come from `request.http`'s fields
/// (falling back to the pseudo-headers); headers from `headers` or, when that map is empty,
/// from `header_map` (`raw_value`, Envoy's `encode_raw_headers`). Envoy leaves `query` empty
/// and keeps the query in `path`; a non-empty `query` is appended if `path` has none.
/// `server.path_prefix` does not apply: Envoy prepends it in HTTP mode only.
///
/// Takes the decoded request by value (tonic hands the handler an owned one): header values,
/// path, host, scheme and principal are moved into the input, not copied.
pub fn to_input(request: CheckRequest) -> Result<CheckInput, Malformed> {
    let attributes = request.attributes.ok_or(Malformed::NoHttpRequest)?;
    let mut http = attributes
        .request
        .and_then(|r| r.http)
        .ok_or(Malformed::NoHttpRequest)?;
    let (mut headers, mut pseudo) = headers(std::mem::take(&mut http.headers), http.header_map);
    // The field when set, else the first pseudo-header of that name (taken: each is read once).
    let mut pick = |field: String, name: &str| -> String {
        if field.is_empty() {
            pseudo
                .iter_mut()
                .find(|(k, _)| k == name)
                .map(|(_, v)| std::mem::take(v))
                .unwrap_or_default()
        } else {
            field
        }
    };
    let method = pick(http.method, ":method");
    if method.is_empty() {
        return Err(Malformed::BadMethod);
    }
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| Malformed::BadMethod)?;
    let mut target = pick(http.path, ":path");
    if target.is_empty() {
        return Err(Malformed::NoPath);
    }
    if !http.query.is_empty() && !target.contains('?') {
        target.push('?');
        target.push_str(&http.query);
    }
    let mut host = pick(http.host, ":authority");
    if host.is_empty() {
        host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string();
    }
    if !headers.contains_key(http::header::HOST) {
        if let Ok(v) = http::HeaderValue::from_str(&host) {
            headers.insert(http::header::HOST, v);
        }
    }
    let mut scheme = pick(http.scheme, ":scheme");
    scheme.make_ascii_lowercase();
    let request_id = input::request_id(&headers);
    let mut input = CheckInput::new(method, host, target, headers, request_id);
    input.scheme = matches!(scheme.as_str(), "http" | "https").then_some(scheme);
    input.adapter = "grpc";
    input.principal = attributes
        .source
        .map(|s| s.principal)
        .filter(|p| !p.is_empty());
    Ok(input)
}

/// Regular headers into a `HeaderMap` (names lowercased, invalid names or values skipped),
/// pseudo-headers into a separate list: from `list` (the `headers` map) unless it is empty,
/// else from `raw` (`header_map`: `raw_value`, or `value` when that is empty). Values are moved
/// into the map (`HeaderValue::try_from(Vec<u8>)` validates them like `from_bytes` without
/// copying).
fn headers(
    list: HashMap<String, String>,
    raw: Option<PbHeaderMap>,
) -> (HeaderMap, Vec<(String, String)>) {
    // Sized once, with room for the Host header `to_input` adds when it is missing: growing a
    // `HeaderMap` rehashes it.
    let count = if list.is_empty() {
        raw.as_ref().map_or(0, |m| m.headers.len())
    } else {
        list.len()
    };
    let mut map = HeaderMap::with_capacity(count + 1);
    let mut pseudo = Vec::new();
    let mut add = |mut key: String, value: Vec<u8>| {
        if key.starts_with(':') {
            key.make_ascii_lowercase();
            let value = String::from_utf8(value)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            pseudo.push((key, value));
        } else if let (Ok(n), Ok(v)) = (header_name(&key), http::HeaderValue::try_from(value)) {
            map.append(n, v);
        }
    };
    if !list.is_empty() {
        for (k, v) in list {
            add(k, v.into_bytes());
        }
    } else if let Some(raw) = raw {
        for h in raw.headers {
            let value = if h.raw_value.is_empty() {
                h.value.into_bytes()
            } else {
                h.raw_value
            };
            add(h.key, value);
        }
    }
    (map, pseudo)
}

/// A header name, lowercased. `HeaderName::from_bytes` lowercases and validates it (no
/// lowercased copy per header) and allocates for every name that is not one of `http`'s
/// standard headers; the names below, which Envoy adds to the requests it checks and browsers
/// send on every navigation, are constants instead (the same `HeaderName`, no allocation).
fn header_name(key: &str) -> Result<HeaderName, http::header::InvalidHeaderName> {
    let known = match key {
        "x-forwarded-proto" => "x-forwarded-proto",
        "x-forwarded-for" => "x-forwarded-for",
        "x-request-id" => "x-request-id",
        "x-envoy-internal" => "x-envoy-internal",
        "x-envoy-external-address" => "x-envoy-external-address",
        "x-envoy-expected-rq-timeout-ms" => "x-envoy-expected-rq-timeout-ms",
        "sec-fetch-site" => "sec-fetch-site",
        "sec-fetch-mode" => "sec-fetch-mode",
        "sec-fetch-user" => "sec-fetch-user",
        "sec-fetch-dest" => "sec-fetch-dest",
        "sec-ch-ua" => "sec-ch-ua",
        "sec-ch-ua-mobile" => "sec-ch-ua-mobile",
        "sec-ch-ua-platform" => "sec-ch-ua-platform",
        "priority" => "priority",
        "traceparent" => "traceparent",
        _ => return HeaderName::from_bytes(key.as_bytes()),
    };
    Ok(HeaderName::from_static(known))
}

/// Render an outcome. Allow → `status.code = 0` (explicit) + `ok_response`: identity headers
/// overwrite (`OVERWRITE_IF_EXISTS_OR_ADD`, `append` unset), the names the HTTP adapter lists
/// in `x-envoy-auth-headers-to-remove` go to `headers_to_remove`, cookies to
/// `response_headers_to_add`. Reply → code 16/7 + `denied_response` with the HTTP adapter's
/// status, headers (one `set-cookie` entry per cookie, `APPEND_IF_EXISTS_OR_ADD`) and body
/// (none for HEAD), see [`denied`]. A 5xx reply is an error: `Err(UNAVAILABLE)`, so Envoy's
/// failure mode applies as it does to the HTTP adapter's 5xx (the adapter renders the login
/// routes' 5xx pages with [`denied`] instead).
pub fn render(outcome: Outcome, head: bool) -> Result<CheckResponse, tonic::Status> {
    match outcome {
        Outcome::Allow(a) => {
            let mut ok = OkHttpResponse::default();
            ok.headers.reserve_exact(a.headers.len());
            for (name, value) in a.headers {
                let text = text(&value);
                if name == identity::HEADERS_TO_REMOVE {
                    ok.headers_to_remove.extend(removable(&text));
                } else {
                    ok.headers.push(option(
                        name.as_str(),
                        text.into_owned(),
                        HeaderAppendAction::OverwriteIfExistsOrAdd,
                    ));
                }
            }
            for c in a.set_cookies {
                ok.response_headers_to_add.push(option(
                    "set-cookie",
                    c,
                    HeaderAppendAction::AppendIfExistsOrAdd,
                ));
            }
            Ok(CheckResponse {
                status: Some(rpc::Status {
                    code: 0,
                    ..Default::default()
                }),
                http_response: Some(HttpResponse::OkResponse(ok)),
                ..Default::default()
            })
        }
        Outcome::Reply(r) => {
            if r.grpc_code() == GRPC_UNAVAILABLE {
                return Err(tonic::Status::unavailable(
                    r.status().canonical_reason().unwrap_or("unavailable"),
                ));
            }
            Ok(denied(r, head))
        }
    }
}

/// A reply as a denial: `status.code` = the reply's code (16, 7, or 14 for a 5xx) with a
/// `denied_response` carrying its HTTP status, headers and body (none for HEAD). Envoy passes
/// any status in a `denied_response` to the client, 5xx included, and a denial is never an
/// allow, whatever `failure_mode_allow` says (only an RPC error or an `error_response` is).
/// [`render`] uses it for every non-5xx reply; the adapter also uses it for the 5xx pages of
/// the login routes, which must reach the browser as pages (`login::Route::answers_page`).
pub fn denied(r: Reply, head: bool) -> CheckResponse {
    let status = r.status();
    CheckResponse {
        status: Some(rpc::Status {
            code: r.grpc_code(),
            message: status.canonical_reason().unwrap_or_default().to_string(),
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(status.as_u16()),
            }),
            headers: reply_headers(&r),
            body: if head { String::new() } else { r.body.text },
        })),
        ..Default::default()
    }
}

/// The reply's headers as the HTTP adapter writes them (each name once, last one wins; then
/// every cookie; then content-type), as header options.
fn reply_headers(r: &Reply) -> Vec<HeaderValueOption> {
    let mut map = HeaderMap::new();
    for (name, value) in &r.headers {
        map.insert(name.clone(), value.clone());
    }
    let mut out: Vec<HeaderValueOption> = map
        .iter()
        .filter(|(n, _)| **n != http::header::CONTENT_TYPE && **n != http::header::SET_COOKIE)
        .map(|(n, v)| {
            option(
                n.as_str(),
                text(v).into_owned(),
                HeaderAppendAction::OverwriteIfExistsOrAdd,
            )
        })
        .collect();
    for c in &r.set_cookies {
        if http::HeaderValue::from_str(c).is_ok() {
            out.push(option(
                "set-cookie",
                c.clone(),
                HeaderAppendAction::AppendIfExistsOrAdd,
            ));
        }
    }
    out.push(option(
        "content-type",
        r.body.content_type.to_string(),
        HeaderAppendAction::OverwriteIfExistsOrAdd,
    ));
    out
}

/// A header value as text, read as UTF-8 with invalid bytes replaced. Visible ASCII (every
/// value portcullis makes from a valid session) is borrowed after `to_str`'s quick test of
/// short values; anything else takes the full lossy reading: the same text either way.
fn text(value: &http::HeaderValue) -> Cow<'_, str> {
    match value.to_str() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(value.as_bytes()),
    }
}

/// Names from a comma-separated list, without pseudo-headers or `host` (Envoy ignores those,
/// checklist 37).
fn removable(list: &str) -> impl Iterator<Item = String> + '_ {
    list.split(',')
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty() && !n.starts_with(':') && n != "host")
}

/// One header option with an explicit action and the deprecated `append` left unset (§2.4).
/// `keep_empty_value` so an empty identity header still overwrites a client-sent copy.
fn option(name: &str, value: String, action: HeaderAppendAction) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_string(),
            value,
            ..Default::default()
        }),
        append_action: action as i32,
        keep_empty_value: true,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(deprecated)] // asserting that `append` stays unset

    use super::*;
    use crate::authz::decision::Allow;
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
    use http::HeaderValue as HV;

    fn request(http: HttpRequest) -> CheckRequest {
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request {
                    http: Some(http),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    fn base() -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            host: "app.example.com".into(),
            path: "/p?x=1&y=%20".into(),
            scheme: "https".into(),
            headers: [
                (":authority", "app.example.com"),
                (":method", "GET"),
                (":path", "/p?x=1&y=%20"),
                (":scheme", "https"),
                ("cookie", "a=1,b=2"),
                ("accept", "text/html"),
                ("x-request-id", "abc-123"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn fields_headers_cookies_query_scheme() {
        let i = to_input(request(base())).expect("input");
        assert_eq!(i.method, Method::GET);
        assert_eq!(i.host, "app.example.com");
        assert_eq!(i.path, "/p");
        assert_eq!(i.query.as_deref(), Some("x=1&y=%20"));
        assert_eq!(i.scheme.as_deref(), Some("https"));
        assert_eq!(i.cookie("a"), Some("1"));
        assert_eq!(i.cookie("b"), Some("2"));
        assert_eq!(i.request_id, "abc-123");
        assert_eq!(i.header("host"), Some("app.example.com"));
        assert!(!i.is_api());
        assert!(i.path_prefix_ok);
    }

    #[test]
    fn header_map_is_used_when_headers_is_empty() {
        let mut h = base();
        h.headers.clear();
        h.method.clear();
        h.path.clear();
        h.host.clear();
        h.header_map = Some(PbHeaderMap {
            headers: [
                (":method", "PURGE"),
                (":path", "/raw?q=1"),
                (":authority", "raw.example.com"),
                ("cookie", "a=1"),
                ("cookie", "b=2"),
                ("X-Requested-With", "XMLHttpRequest"),
            ]
            .into_iter()
            .map(|(k, v)| HeaderValue {
                key: k.into(),
                raw_value: v.as_bytes().to_vec(),
                ..Default::default()
            })
            .collect(),
        });
        let i = to_input(request(h)).expect("input");
        assert_eq!(i.method.as_str(), "PURGE");
        assert_eq!(i.host, "raw.example.com");
        assert_eq!(i.path_and_query(), "/raw?q=1");
        assert_eq!((i.cookie("a"), i.cookie("b")), (Some("1"), Some("2")));
        assert!(i.is_api());
        assert!(
            !i.request_id.as_str().is_empty(),
            "a random id without x-request-id"
        );
    }

    /// The owned conversion's rules, one by one: `header_map` entries use `raw_value`, else
    /// `value`; invalid names and values are skipped, obs-text values kept as bytes; pseudo-
    /// headers match case-insensitively (the first of a name wins) and fill empty fields;
    /// the Host header is the host's fallback; the scheme is lowercased; the principal is kept.
    #[test]
    fn owned_conversion_keeps_every_rule() {
        use envoy_types::pb::envoy::service::auth::v3::attribute_context::Peer;
        let entry = |k: &str, value: &str, raw: &[u8]| HeaderValue {
            key: k.into(),
            value: value.into(),
            raw_value: raw.to_vec(),
        };
        let http = HttpRequest {
            header_map: Some(PbHeaderMap {
                headers: vec![
                    entry(":METHOD", "", b"DELETE"),
                    entry(":method", "", b"GET"),
                    entry(":Path", "/a?b=1?c", b""),
                    entry(":scheme", "", b"HTTPS"),
                    entry("Host", "", b"from-header.example"),
                    entry("x-value", "from value", b""),
                    entry("x-raw", "ignored", b"from raw"),
                    entry("x-obs", "", b"caf\xe9"),
                    entry("bad name", "", b"v"),
                    entry("x-bad-value", "", b"a\nb"),
                    entry("x-empty", "", b""),
                ],
            }),
            ..Default::default()
        };
        let mut req = request(http);
        if let Some(a) = req.attributes.as_mut() {
            a.source = Some(Peer {
                principal: "spiffe://cluster.local/ns/a/sa/b".into(),
                ..Default::default()
            });
        }
        let i = to_input(req).expect("input");
        assert_eq!(
            i.method,
            Method::DELETE,
            "the first pseudo-header of a name"
        );
        assert_eq!((i.path.as_str(), i.query.as_deref()), ("/a", Some("b=1?c")));
        assert_eq!(i.constraint_query.as_deref(), Some("b=1?c"));
        assert_eq!(i.scheme.as_deref(), Some("https"));
        assert_eq!(i.host, "from-header.example");
        assert_eq!(i.header("host"), Some("from-header.example"));
        assert_eq!(i.header("x-value"), Some("from value"));
        assert_eq!(i.header("x-raw"), Some("from raw"));
        assert_eq!(
            i.headers.get("x-obs").map(|v| v.as_bytes()),
            Some(&b"caf\xe9"[..])
        );
        assert_eq!(i.header("x-empty"), Some(""));
        assert!(i.headers.get("x-bad-value").is_none());
        assert!(i.headers.keys().all(|n| !n.as_str().starts_with(':')));
        assert_eq!(i.headers.len(), 5, "{:?}", i.headers);
        assert_eq!(i.adapter, "grpc");
        assert_eq!(i.service_account(), Some(("a", "b")));

        // `headers` (the map) wins over `header_map`; an unknown scheme is none; an empty
        // principal is none; a host field wins over the Host header, which is kept as sent.
        let mut h = base();
        h.scheme = "FTP".into();
        h.headers.insert("host".into(), "other.example".into());
        h.header_map = Some(PbHeaderMap {
            headers: vec![entry("x-ignored", "", b"1")],
        });
        let i = to_input(request(h)).expect("input");
        assert_eq!(i.scheme, None);
        assert_eq!(i.principal, None);
        assert_eq!(i.host, "app.example.com");
        assert_eq!(i.header("host"), Some("other.example"));
        assert!(i.header("x-ignored").is_none());
    }

    #[test]
    fn header_names_are_those_of_from_bytes() {
        for key in [
            "x-forwarded-proto",
            "x-forwarded-for",
            "x-request-id",
            "x-envoy-internal",
            "x-envoy-external-address",
            "x-envoy-expected-rq-timeout-ms",
            "sec-fetch-site",
            "sec-fetch-mode",
            "sec-fetch-user",
            "sec-fetch-dest",
            "sec-ch-ua",
            "sec-ch-ua-mobile",
            "sec-ch-ua-platform",
            "priority",
            "traceparent",
            "X-Forwarded-Proto",
            "accept",
            "Cookie",
            "x-custom",
            "X_Auth_Request_User",
        ] {
            let want = HeaderName::from_bytes(key.as_bytes()).expect("valid");
            assert_eq!(header_name(key).expect("valid"), want, "{key}");
        }
        for bad in ["", "bad name", "x\u{e9}", "a:b", ":method"] {
            assert!(header_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn text_is_the_lossy_utf8_reading() {
        let values: [&[u8]; 6] = [
            b"",
            b"alice@example.com",
            b"a\tb",
            "caf\u{e9} \u{1F600}".as_bytes(),
            b"caf\xe9",
            b"\xff\xfe x",
        ];
        for v in values {
            let hv = HV::from_bytes(v).expect("a valid header value");
            assert_eq!(text(&hv), String::from_utf8_lossy(v), "{v:?}");
        }
    }

    #[test]
    fn query_field_is_used_only_when_path_has_none() {
        let mut h = base();
        h.path = "/p".into();
        h.query = "z=9".into();
        assert_eq!(
            to_input(request(h.clone())).expect("i").path_and_query(),
            "/p?z=9"
        );
        h.path = "/p?x=1".into();
        assert_eq!(to_input(request(h)).expect("i").path_and_query(), "/p?x=1");
    }

    #[test]
    fn nothing_to_decide_on_is_malformed() {
        let empty_http = HttpRequest::default();
        let mut bad_method = base();
        bad_method.method = "GE T".into();
        let mut no_path = base();
        no_path.path.clear();
        no_path.headers.remove(":path");
        let cases = [
            (CheckRequest::default(), Malformed::NoHttpRequest),
            (
                CheckRequest {
                    attributes: Some(AttributeContext::default()),
                },
                Malformed::NoHttpRequest,
            ),
            (
                CheckRequest {
                    attributes: Some(AttributeContext {
                        request: Some(Request::default()),
                        ..Default::default()
                    }),
                },
                Malformed::NoHttpRequest,
            ),
            (request(empty_http), Malformed::BadMethod),
            (request(bad_method), Malformed::BadMethod),
            (request(no_path), Malformed::NoPath),
        ];
        for (req, want) in cases {
            let shown = format!("{req:?}");
            assert_eq!(to_input(req).expect_err("malformed"), want, "{shown}");
        }
        let r = render(Outcome::Reply(Malformed::NoPath.reply()), false).expect("rendered");
        assert_eq!(r.status.expect("status").code, 7);
        match r.http_response {
            Some(HttpResponse::DeniedResponse(d)) => {
                assert_eq!(d.status.expect("status").code, 403)
            }
            other => panic!("{other:?}"),
        }
    }

    fn find<'a>(opts: &'a [HeaderValueOption], name: &str) -> Vec<&'a HeaderValueOption> {
        opts.iter()
            .filter(|o| o.header.as_ref().is_some_and(|h| h.key == name))
            .collect()
    }

    #[test]
    fn allow_overwrites_identity_and_moves_removals_and_cookies() {
        let outcome = Outcome::Allow(Allow {
            headers: vec![
                (identity::USER, HV::from_static("alice")),
                (identity::EMAIL, HV::from_static("")),
                (
                    identity::HEADERS_TO_REMOVE,
                    HV::from_static("x-auth-request-access-token, :authority, Host,x-b"),
                ),
            ],
            set_cookies: vec!["s=1; Path=/".into(), "t=2".into()],
            body: Some(Body::text("ignored")),
        });
        let r = render(outcome, false).expect("allow");
        assert_eq!(r.status.expect("explicit status").code, 0);
        let Some(HttpResponse::OkResponse(ok)) = r.http_response else {
            panic!("ok_response expected")
        };
        assert_eq!(ok.headers.len(), 2);
        for o in &ok.headers {
            assert_eq!(o.append, None);
            assert_eq!(
                o.append_action,
                HeaderAppendAction::OverwriteIfExistsOrAdd as i32
            );
        }
        assert_eq!(
            find(&ok.headers, "x-auth-request-email")[0]
                .header
                .as_ref()
                .map(|h| h.value.as_str()),
            Some("")
        );
        assert!(find(&ok.headers, "x-envoy-auth-headers-to-remove").is_empty());
        assert_eq!(
            ok.headers_to_remove,
            vec!["x-auth-request-access-token", "x-b"]
        );
        let cookies = find(&ok.response_headers_to_add, "set-cookie");
        assert_eq!(cookies.len(), 2);
        for c in cookies {
            assert_eq!(c.append, None);
            assert_eq!(
                c.append_action,
                HeaderAppendAction::AppendIfExistsOrAdd as i32
            );
        }
    }

    #[test]
    fn redirect_is_16_with_302_location_and_one_entry_per_cookie() {
        let reply = Reply::redirect(
            "https://idp/authorize?x=1",
            vec!["a=1".into(), "b=2".into()],
        );
        let r = render(Outcome::Reply(reply), false).expect("deny");
        assert_eq!(r.status.expect("status").code, 16);
        let Some(HttpResponse::DeniedResponse(d)) = r.http_response else {
            panic!("denied_response expected")
        };
        assert_eq!(d.status.expect("status").code, 302);
        let loc = find(&d.headers, "location");
        assert_eq!(loc.len(), 1);
        assert_eq!(
            loc[0].append_action,
            HeaderAppendAction::OverwriteIfExistsOrAdd as i32
        );
        assert_eq!(find(&d.headers, "set-cookie").len(), 2);
        assert_eq!(find(&d.headers, "content-type").len(), 1);
        assert!(d.headers.iter().all(|o| o.append.is_none()));
        assert!(d.body.contains("Found"));
        let head = render(Outcome::Reply(Reply::redirect("/x", vec![])), true).expect("deny");
        let Some(HttpResponse::DeniedResponse(d)) = head.http_response else {
            panic!("denied_response expected")
        };
        assert_eq!(d.body, "", "HEAD gets no body");
    }

    #[test]
    fn forbidden_is_7_and_5xx_is_unavailable() {
        let r = render(
            Outcome::Reply(Reply::new(
                StatusCode::FORBIDDEN,
                Body::html("<p>no</p>".into()),
            )),
            false,
        )
        .expect("deny");
        assert_eq!(r.status.expect("status").code, 7);
        let err = render(
            Outcome::Reply(Reply::new(StatusCode::BAD_GATEWAY, Body::text("x"))),
            false,
        )
        .expect_err("error");
        assert_eq!(err.code(), tonic::Code::Unavailable);
    }

    #[test]
    fn denied_carries_a_5xx_page_as_a_denial() {
        let page = || {
            Reply::new(
                StatusCode::BAD_GATEWAY,
                Body::html("<h1>The identity provider did not answer</h1>".into()),
            )
        };
        let r = denied(page(), false);
        // Non-zero: a denial, never an allow; no error_response, so not Envoy's error path.
        assert_eq!(r.status.as_ref().expect("status").code, GRPC_UNAVAILABLE);
        let Some(HttpResponse::DeniedResponse(d)) = r.http_response else {
            panic!("denied_response expected")
        };
        assert_eq!(d.status.expect("status").code, 502);
        assert!(d.body.contains("identity provider"), "{}", d.body);
        let ct = find(&d.headers, "content-type");
        assert_eq!(
            ct[0].header.as_ref().map(|h| h.value.as_str()),
            Some("text/html; charset=utf-8")
        );
        let head = denied(page(), true);
        let Some(HttpResponse::DeniedResponse(d)) = head.http_response else {
            panic!("denied_response expected")
        };
        assert_eq!((d.status.expect("s").code, d.body.as_str()), (502, ""));
        // The same reply through `render` stays an RPC error (an ordinary check's failure).
        assert!(render(Outcome::Reply(page()), false).is_err());
    }
}
