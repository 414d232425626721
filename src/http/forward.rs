//! Forward auth: nginx `auth_request` on `<proxy_prefix>/auth`, Caddy `forward_auth` and
//! Traefik `forwardAuth` on `<proxy_prefix>/forward` (or on every path with
//! `forward.catch_all`). The proxy sends the client's headers and describes the original request
//! in `X-Forwarded-Method`, `-Proto`, `-Host` and `-Uri`. Those four are read only from peers in
//! `server.trusted_proxies`; from anyone else they are ignored and the request line that reached
//! portcullis is the request decided on (oauth2-proxy GHSA-7x63-xv5r-3p2x, CVE-2026-76835). A
//! forwarded URI becomes `CheckInput::path`, so rules see it through the same
//! `authz::path::canonical` as an Envoy path.
//!
//! nginx reads only the status of an auth subrequest (2xx allow, 401, 403, anything else an
//! error), so `/auth` never redirects: 202 (or `forward.auth_status`) + identity headers, 401,
//! 403. It copies only the first `Set-Cookie` of the subrequest, so every `Set-Cookie` line is
//! also sent as `x-portcullis-set-cookie-<n>` for `auth_request_set` (config/nginx/).
//! Caddy and Traefik pass a non-2xx answer to the client as it is, so `/forward` answers like
//! the Envoy adapter: 200 + identity headers, or the 302 to the IdP, 401 JSON, 403 page.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::app::App;
use crate::authz::decision::{Allow, Body, DenyReason, Outcome, Reply};
use crate::authz::input::CheckInput;
use crate::authz::{self};
use crate::http::ext_authz;
use crate::session::cookie::MAX_CHUNKS;

/// Which forward-auth convention a request follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// nginx `auth_request`: statuses only.
    Auth,
    /// Caddy `forward_auth`, Traefik `forwardAuth`: the answer reaches the client.
    Forward,
}

/// The most `Set-Cookie` lines one answer carries (a session in [`MAX_CHUNKS`] chunks plus the
/// unchunked name, set or expired): the `x-portcullis-set-cookie-<n>` slots an nginx config
/// must copy.
pub const COOKIE_SLOTS: usize = MAX_CHUNKS + 1;

/// Prefix of the numbered copies of `Set-Cookie` on `<proxy_prefix>/auth` answers and
/// `<proxy_prefix>/forward` allows.
pub const SET_COOKIE_COPY: &str = "x-portcullis-set-cookie-";

const X_FORWARDED_METHOD: &str = "x-forwarded-method";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_FORWARDED_HOST: &str = "x-forwarded-host";
const X_FORWARDED_URI: &str = "x-forwarded-uri";

/// Longest forwarded URI read (the path part is capped again by `authz::path::MAX_PATH`).
const MAX_FORWARDED_URI: usize = 16 * 1024;

/// Which mode (if any) a check-listener request is for: `/auth`, `/forward`, or any path with
/// `forward.catch_all`. `None`: Envoy's HTTP ext_authz (forwarded headers never read).
pub fn mode_for(app: &App, path: &str) -> Option<Mode> {
    let prefix = &app.config.server.proxy_prefix;
    match path.strip_prefix(prefix.as_str()) {
        Some("/auth") => Some(Mode::Auth),
        Some("/forward") => Some(Mode::Forward),
        _ if app.config.forward.catch_all => Some(Mode::Forward),
        _ => None,
    }
}

/// Answer one forward-auth check.
pub async fn check(State(app): State<Arc<App>>, mode: Mode, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let (parts, body) = request.into_parts();
    if let Some(too_large) = ext_authz::drain_within_limit(&app, &parts, body).await {
        return too_large;
    }
    let trusted = peer.is_some_and(|ip| trusts(&app.config.server.trusted_proxies, ip));
    let input = to_input(&app, mode, trusted, &parts);
    if !trusted && has_forwarded(&parts.headers) {
        warn_untrusted(peer);
    }
    let head = parts.method == Method::HEAD;
    let outcome = match authz::check(&app, &input).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Reply(app.error_reply(&e, &input)),
    };
    let outcome = match outcome {
        Outcome::Allow(mut a) => {
            a.headers = blank_removed(a.headers);
            Outcome::Allow(a)
        }
        reply => reply,
    };
    match mode {
        Mode::Auth => {
            ext_authz::render_with(for_nginx(outcome), head, app.config.forward.auth_status)
        }
        Mode::Forward => ext_authz::render(for_forward(outcome), head),
    }
}

/// Caddy `forward_auth` / Traefik `forwardAuth`: an allow also carries every
/// `x-portcullis-set-cookie-<n>` slot, empty when unused. Caddy's placeholder for a response
/// header joins repeated `Set-Cookie` lines with commas, so its example copies the numbered
/// slots into the client's response instead (`handle_response`, config/caddy/), skipping the
/// empty ones; a slot that is absent would leave the placeholder's own text in the header.
/// Traefik's `addAuthCookiesToResponse` reads the `Set-Cookie` lines themselves. A refusal
/// reaches the client as it is, so it needs no copies.
pub fn for_forward(outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Allow(mut a) => {
            for i in 0..COOKIE_SLOTS {
                let value = a
                    .set_cookies
                    .get(i)
                    .and_then(|c| HeaderValue::from_str(c).ok())
                    .unwrap_or_else(|| HeaderValue::from_static(""));
                if let Ok(name) = HeaderName::from_bytes(format!("{SET_COOKIE_COPY}{i}").as_bytes())
                {
                    a.headers.push((name, value));
                }
            }
            Outcome::Allow(a)
        }
        reply => reply,
    }
}

/// Envoy removes the identity headers named in `x-envoy-auth-headers-to-remove`; proxies
/// copying named headers have no such list, so each is sent empty instead: nginx's
/// `proxy_set_header` with an empty value, Caddy's `request_header` (`copy_headers`) and Traefik's
/// `authResponseHeaders` then all replace a client-sent copy.
fn blank_removed(headers: Vec<(HeaderName, HeaderValue)>) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(headers.len() + 4);
    for (name, value) in headers {
        if name == crate::identity::HEADERS_TO_REMOVE {
            for n in value.to_str().unwrap_or_default().split(',') {
                if let Ok(n) = HeaderName::from_bytes(n.trim().as_bytes()) {
                    out.push((n, HeaderValue::from_static("")));
                }
            }
        } else {
            out.push((name, value));
        }
    }
    out
}

/// Whether `ip` is in `server.trusted_proxies` (IPv4-mapped IPv6 peers count as IPv4).
pub fn trusts(trusted: &[ipnet::IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// The original request as the proxy describes it (trusted peers only), else the request line.
pub fn to_input(app: &App, mode: Mode, trusted: bool, parts: &http::request::Parts) -> CheckInput {
    let target = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let check_query = target.split_once('?').map(|(_, q)| q.to_string());
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let request_id = crate::authz::input::request_id(&parts.headers);
    let forwarded = if trusted {
        Forwarded::read(&parts.headers)
    } else {
        Ok(Forwarded::default())
    };
    let mut input = match &forwarded {
        Ok(f) => {
            let mut input = CheckInput::new(
                f.method.clone().unwrap_or_else(|| parts.method.clone()),
                f.host.as_deref().unwrap_or(&host),
                f.uri.as_deref().unwrap_or(target),
                parts.headers.clone(),
                request_id,
            );
            input.scheme = f.proto.clone();
            input
        }
        Err(what) => {
            tracing::warn!(
                request_id = %request_id,
                header = what,
                "a trusted proxy sent a forwarded header that cannot be read"
            );
            let mut input = CheckInput::new(
                parts.method.clone(),
                &host,
                target,
                parts.headers.clone(),
                request_id,
            );
            input.unreadable = Some(DenyReason::BadForwardedHeader);
            input
        }
    };
    input.adapter = "forward";
    input.constraint_query = check_query;
    let endpoint = format!("{}/forward", app.config.server.proxy_prefix);
    match mode {
        // nginx reads a status only: no login redirect, no own routes (they are proxied to
        // portcullis directly, outside auth_request).
        Mode::Auth => {
            input.own_routes = false;
            input.login_redirect = false;
        }
        // The endpoint itself (the real request line from an untrusted peer) is decided on like
        // any path, not answered as an unknown route of ours.
        Mode::Forward => input.own_routes = input.path != endpoint,
    }
    input
}

/// The four forwarded headers, each optional; `Err(name)` when one is present but unreadable
/// (repeated, not text, not the expected shape).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Forwarded {
    pub method: Option<Method>,
    pub proto: Option<String>,
    pub host: Option<String>,
    pub uri: Option<String>,
}

impl Forwarded {
    pub fn read(headers: &HeaderMap) -> Result<Self, &'static str> {
        let method = one(headers, X_FORWARDED_METHOD)?
            .map(|m| {
                // Methods are case-sensitive tokens; `get` is not GET (Gatekeeper
                // CVE-2020-14359), so it is kept as sent and matched as such.
                Method::from_bytes(m.trim().as_bytes()).map_err(|_| X_FORWARDED_METHOD)
            })
            .transpose()?;
        let proto = one(headers, X_FORWARDED_PROTO)?
            .map(|p| {
                // A chain of proxies may append: the first entry is the client's.
                let first = p
                    .split(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                match first.as_str() {
                    "http" | "https" => Ok(first),
                    _ => Err(X_FORWARDED_PROTO),
                }
            })
            .transpose()?;
        let host = one(headers, X_FORWARDED_HOST)?
            .map(|h| {
                let first = h.split(',').next().unwrap_or("").trim();
                match first.parse::<http::uri::Authority>() {
                    Ok(a) if !first.is_empty() && !first.contains('@') => Ok(a.to_string()),
                    _ => Err(X_FORWARDED_HOST),
                }
            })
            .transpose()?;
        let uri = one(headers, X_FORWARDED_URI)?
            .map(|u| {
                let ok = u.starts_with('/')
                    && u.len() <= MAX_FORWARDED_URI
                    && !u.chars().any(|c| c.is_control() || c == ' ');
                if ok {
                    Ok(u.to_string())
                } else {
                    Err(X_FORWARDED_URI)
                }
            })
            .transpose()?;
        Ok(Self {
            method,
            proto,
            host,
            uri,
        })
    }
}

/// At most one line of `name`, as text. Two lines mean two proxies (or a client and a proxy)
/// disagree: refused rather than picking one.
fn one<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, &'static str> {
    let mut all = headers.get_all(name).iter();
    match (all.next(), all.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => v.to_str().map(Some).map_err(|_| name),
        (Some(_), Some(_)) => Err(name),
    }
}

fn has_forwarded(headers: &HeaderMap) -> bool {
    [
        X_FORWARDED_METHOD,
        X_FORWARDED_PROTO,
        X_FORWARDED_HOST,
        X_FORWARDED_URI,
    ]
    .iter()
    .any(|h| headers.contains_key(*h))
}

/// Once per process: forwarded headers from a peer that is not trusted usually mean the proxy
/// is missing from `server.trusted_proxies` (rules then see the endpoint's own path).
fn warn_untrusted(peer: Option<IpAddr>) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            peer = ?peer,
            "forwarded headers from a peer outside server.trusted_proxies are ignored; \
             add your proxy's address if it is the one sending them (logged once)"
        );
    } else {
        tracing::debug!(peer = ?peer, "forwarded headers from an untrusted peer ignored");
    }
}

/// nginx `auth_request` semantics: an allow is `forward.auth_status` with the identity headers
/// and no body; a login is 401; any other refusal 403 (nginx turns every other 4xx into 500);
/// 5xx stays an error. Every `Set-Cookie` line is copied to `x-portcullis-set-cookie-<n>`.
pub fn for_nginx(outcome: Outcome) -> Outcome {
    let (status, headers, cookies, text) = match outcome {
        Outcome::Allow(a) => (StatusCode::OK, a.headers, a.set_cookies, ""),
        Outcome::Reply(r) => {
            let status = r.status();
            let (status, text) = if status == StatusCode::UNAUTHORIZED || status.is_redirection() {
                (StatusCode::UNAUTHORIZED, "Unauthorized\n")
            } else if status.is_server_error() {
                (status, "Service unavailable\n")
            } else {
                (StatusCode::FORBIDDEN, "Forbidden\n")
            };
            let headers = r
                .headers
                .into_iter()
                .filter(|(n, _)| {
                    *n == http::header::CACHE_CONTROL || *n == http::header::WWW_AUTHENTICATE
                })
                .collect();
            (status, headers, r.set_cookies, text)
        }
    };
    let mut headers: Vec<(HeaderName, HeaderValue)> = headers;
    for (i, c) in cookies.iter().enumerate() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(format!("{SET_COOKIE_COPY}{i}").as_bytes()),
            HeaderValue::from_str(c),
        ) {
            headers.push((name, value));
        }
    }
    let body = Body::text(text);
    // An allow keeps its place as `Outcome::Allow`; the adapter renders it with
    // `forward.auth_status`.
    if status.is_success() {
        Outcome::Allow(Allow {
            headers,
            set_cookies: cookies,
            body: Some(body),
        })
    } else {
        let mut reply = Reply::new(status, body);
        reply.headers = headers;
        reply.set_cookies = cookies;
        Outcome::Reply(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn forwarded_headers_are_read_or_refused() {
        let f = Forwarded::read(&headers(&[
            ("x-forwarded-method", "POST"),
            ("x-forwarded-proto", "HTTPS, http"),
            ("x-forwarded-host", "app.example.com:8443, proxy.internal"),
            ("x-forwarded-uri", "/a/../admin?x=1"),
        ]))
        .expect("readable");
        assert_eq!(f.method, Some(Method::POST));
        assert_eq!(f.proto.as_deref(), Some("https"));
        assert_eq!(f.host.as_deref(), Some("app.example.com:8443"));
        assert_eq!(
            f.uri.as_deref(),
            Some("/a/../admin?x=1"),
            "canonicalised later, by decide"
        );
        assert_eq!(Forwarded::read(&HeaderMap::new()), Ok(Forwarded::default()));
        let refused: &[(&str, &str)] = &[
            ("x-forwarded-proto", "ftp"),
            ("x-forwarded-proto", ""),
            ("x-forwarded-host", "user@evil.example"),
            ("x-forwarded-host", "evil example"),
            ("x-forwarded-host", ""),
            ("x-forwarded-uri", "admin"),
            ("x-forwarded-uri", "http://evil.example/admin"),
            ("x-forwarded-uri", "/a b"),
            ("x-forwarded-uri", "/a\tb"),
            ("x-forwarded-method", "GE T"),
        ];
        for (name, value) in refused {
            assert!(
                Forwarded::read(&headers(&[(name, value)])).is_err(),
                "{name}: {value:?}"
            );
        }
        let twice = headers(&[
            ("x-forwarded-uri", "/public"),
            ("x-forwarded-uri", "/admin"),
        ]);
        assert_eq!(Forwarded::read(&twice), Err("x-forwarded-uri"));
        // Methods are kept as sent: `get` is not GET.
        let lower = Forwarded::read(&headers(&[("x-forwarded-method", "get")])).expect("token");
        assert_ne!(lower.method, Some(Method::GET));
    }

    proptest::proptest! {
        /// Whatever a proxy sends, reading never panics, and what is read has the promised shape.
        #[test]
        fn forwarded_reading_is_total(
            method in "[ -~]{0,12}",
            proto in "[ -~]{0,12}",
            host in "[ -~]{0,40}",
            uri in "[ -~]{0,60}",
        ) {
            let mut h = HeaderMap::new();
            for (name, value) in [
                (X_FORWARDED_METHOD, &method),
                (X_FORWARDED_PROTO, &proto),
                (X_FORWARDED_HOST, &host),
                (X_FORWARDED_URI, &uri),
            ] {
                if let Ok(v) = HeaderValue::from_str(value) {
                    h.insert(name, v);
                }
            }
            if let Ok(f) = Forwarded::read(&h) {
                if let Some(p) = f.proto {
                    proptest::prop_assert!(p == "http" || p == "https");
                }
                if let Some(u) = f.uri {
                    proptest::prop_assert!(u.starts_with('/') && !u.contains(' '));
                }
                if let Some(host) = f.host {
                    proptest::prop_assert!(!host.is_empty() && !host.contains(['@', ' ', '/']));
                }
            }
        }
    }

    #[test]
    fn trusted_peers() {
        let nets: Vec<ipnet::IpNet> = ["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"]
            .iter()
            .map(|s| s.parse().expect("net"))
            .collect();
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(trusts(&nets, ip("127.0.0.1")));
        assert!(trusts(&nets, ip("::ffff:127.0.0.1")), "IPv4-mapped");
        assert!(trusts(&nets, ip("10.200.3.4")));
        assert!(trusts(&nets, ip("fd12::1")));
        assert!(!trusts(&nets, ip("127.0.0.2")));
        assert!(!trusts(&nets, ip("::1")));
        assert!(!trusts(&[], ip("127.0.0.1")), "empty trusts nobody");
    }

    fn statuses(outcome: Outcome) -> (bool, u16, Vec<String>) {
        match for_nginx(outcome) {
            Outcome::Allow(a) => (
                true,
                200,
                a.headers
                    .iter()
                    .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or("?")))
                    .collect(),
            ),
            Outcome::Reply(r) => (
                false,
                r.status().as_u16(),
                r.headers
                    .iter()
                    .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or("?")))
                    .collect(),
            ),
        }
    }

    #[test]
    fn nginx_sees_only_allow_401_403_or_an_error() {
        let cases = [
            (Reply::redirect("https://idp/authorize", vec![]), 401),
            (
                Reply::new(StatusCode::UNAUTHORIZED, Body::json(&serde_json::json!({}))),
                401,
            ),
            (Reply::new(StatusCode::FORBIDDEN, Body::text("no")), 403),
            (
                Reply::new(StatusCode::BAD_REQUEST, Body::text("ambiguous")),
                403,
            ),
            (Reply::new(StatusCode::NOT_FOUND, Body::text("?")), 403),
            (
                Reply::new(StatusCode::SERVICE_UNAVAILABLE, Body::text("down")),
                503,
            ),
        ];
        for (reply, want) in cases {
            let (allow, status, headers) = statuses(Outcome::Reply(reply));
            assert!(!allow);
            assert_eq!(status, want);
            assert!(
                !headers.iter().any(|h| h.starts_with("location")),
                "never a redirect: {headers:?}"
            );
        }
        let allow = Allow {
            headers: vec![(crate::identity::USER, HeaderValue::from_static("alice"))],
            set_cookies: vec!["a=1; Path=/".into(), "b=2; Path=/".into()],
            body: Some(Body::html("<p>signed in</p>".into())),
        };
        let Outcome::Allow(a) = for_nginx(Outcome::Allow(allow)) else {
            panic!("an allow stays an allow")
        };
        let names: Vec<&str> = a.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-auth-request-user",
                "x-portcullis-set-cookie-0",
                "x-portcullis-set-cookie-1"
            ]
        );
        assert_eq!(
            a.set_cookies.len(),
            2,
            "the plain Set-Cookie lines stay too"
        );
        assert_eq!(a.body.map(|b| b.text), Some(String::new()));
    }

    #[test]
    fn forward_allows_carry_every_cookie_slot_and_refusals_none() {
        let allow = Allow {
            headers: vec![(crate::identity::USER, HeaderValue::from_static("alice"))],
            set_cookies: vec![
                "_portcullis_0=x; Path=/".into(),
                "_portcullis_1=y; Path=/".into(),
            ],
            body: None,
        };
        let Outcome::Allow(a) = for_forward(Outcome::Allow(allow)) else {
            panic!("an allow stays an allow")
        };
        let slots: Vec<(String, String)> = a
            .headers
            .iter()
            .filter(|(n, _)| n.as_str().starts_with(SET_COOKIE_COPY))
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_string()))
            .collect();
        let want: Vec<(String, String)> = (0..COOKIE_SLOTS)
            .map(|i| {
                let v = match i {
                    0 => "_portcullis_0=x; Path=/",
                    1 => "_portcullis_1=y; Path=/",
                    _ => "",
                };
                (format!("{SET_COOKIE_COPY}{i}"), v.to_string())
            })
            .collect();
        assert_eq!(slots, want);
        assert_eq!(
            a.set_cookies.len(),
            2,
            "the plain Set-Cookie lines stay too"
        );

        let mut reply = Reply::redirect("https://idp/authorize", vec![]);
        reply.set_cookies = vec!["_portcullis_csrf_1=z".into()];
        let Outcome::Reply(r) = for_forward(Outcome::Reply(reply)) else {
            panic!("a refusal stays a refusal")
        };
        assert!(
            !r.headers
                .iter()
                .any(|(n, _)| n.as_str().starts_with(SET_COOKIE_COPY)),
            "{:?}",
            r.headers
        );
        assert_eq!(r.set_cookies.len(), 1);
    }

    #[test]
    fn identity_headers_envoy_would_remove_are_sent_empty() {
        let h = blank_removed(vec![
            (crate::identity::USER, HeaderValue::from_static("alice")),
            (
                crate::identity::HEADERS_TO_REMOVE,
                HeaderValue::from_static("x-auth-request-access-token, x-auth-request-email"),
            ),
        ]);
        let got: Vec<(&str, &[u8])> = h.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
        assert_eq!(
            got,
            [
                ("x-auth-request-user", &b"alice"[..]),
                ("x-auth-request-access-token", &b""[..]),
                ("x-auth-request-email", &b""[..]),
            ]
        );
    }

    /// Traefik is not in Debian, so the e2e tests cannot run its example; check what can be
    /// checked: it asks `/oauth2/forward`, copies every identity header and does not trust a
    /// client's X-Forwarded-*.
    #[test]
    fn traefik_example_matches_what_portcullis_answers() {
        use figment::providers::{Format, Yaml};
        let v: serde_json::Value = figment::Figment::from(Yaml::string(include_str!(
            "../../config/traefik/dynamic.yml"
        )))
        .extract()
        .expect("config/traefik/dynamic.yml parses");
        let fa = &v["http"]["middlewares"]["portcullis"]["forwardAuth"];
        let address = fa["address"].as_str().expect("address");
        assert!(address.ends_with("/oauth2/forward"), "{address}");
        assert_eq!(fa["trustForwardHeader"], serde_json::json!(false));
        let copied: Vec<String> = fa["authResponseHeaders"]
            .as_array()
            .expect("authResponseHeaders")
            .iter()
            .filter_map(|h| h.as_str().map(str::to_ascii_lowercase))
            .collect();
        assert_eq!(copied, crate::identity::IDENTITY_HEADERS);
        let router = &v["http"]["routers"]["app"];
        assert_eq!(router["middlewares"], serde_json::json!(["portcullis"]));
        // Traefik adds the session cookie and every chunk name to the client's response.
        let cookies: Vec<&str> = fa["addAuthCookiesToResponse"]
            .as_array()
            .expect("addAuthCookiesToResponse")
            .iter()
            .filter_map(|c| c.as_str())
            .collect();
        let key = crate::session::cookie::CookieKey::from_base64(
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .expect("key");
        let codec = crate::session::cookie::CookieCodec::new(&key, &[]);
        let default_name = crate::config::RawConfig::default().cookie.name;
        assert_eq!(cookies, codec.all_names(&default_name));
        // The Caddy example copies the same headers onto the request to the app.
        let caddy = include_str!("../../config/caddy/Caddyfile");
        let caddy_copied: Vec<String> = caddy
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("request_header "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_ascii_lowercase)
            .collect();
        assert_eq!(caddy_copied, crate::identity::IDENTITY_HEADERS);
    }

    #[test]
    fn every_cookie_slot_is_in_the_nginx_example() {
        let conf = include_str!("../../config/nginx/portcullis.conf");
        for i in 0..COOKIE_SLOTS {
            let var = format!("$upstream_http_x_portcullis_set_cookie_{i}");
            assert!(
                conf.contains(&var),
                "config/nginx/portcullis.conf lacks {var}"
            );
        }
        let beyond = format!("$upstream_http_x_portcullis_set_cookie_{COOKIE_SLOTS}");
        assert!(!conf.contains(&beyond));
    }

    #[test]
    fn every_cookie_slot_is_in_the_caddy_example() {
        let conf = include_str!("../../config/caddy/Caddyfile");
        for i in 0..COOKIE_SLOTS {
            let slot = format!("{{rp.header.X-Portcullis-Set-Cookie-{i}}}");
            let copy = format!("header @cookie{i} +Set-Cookie {slot}");
            let skip_empty = format!("@cookie{i} not vars {slot} \"\"");
            for line in [copy, skip_empty] {
                assert!(
                    conf.contains(&line),
                    "config/caddy/Caddyfile lacks {line:?}"
                );
            }
        }
        assert!(!conf.contains(&format!("Set-Cookie-{COOKIE_SLOTS}")));
    }
}
