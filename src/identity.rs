//! Identity → upstream headers. Every configured header is sent on every allow (empty when the
//! claim is absent) so that a client-sent copy never survives Envoy's overwrite; identity
//! headers that are *not* configured are named in `x-envoy-auth-headers-to-remove` so a
//! client cannot inject them either.

use http::{HeaderName, HeaderValue};

use crate::config::HeadersConfig;
use crate::session::Session;

pub const USER: HeaderName = HeaderName::from_static("x-auth-request-user");
pub const EMAIL: HeaderName = HeaderName::from_static("x-auth-request-email");
pub const PREFERRED_USERNAME: HeaderName =
    HeaderName::from_static("x-auth-request-preferred-username");
pub const GROUPS: HeaderName = HeaderName::from_static("x-auth-request-groups");
pub const ACCESS_TOKEN: HeaderName = HeaderName::from_static("x-auth-request-access-token");
/// Every identity header portcullis can send (lowercase), for spotting smuggled variants.
pub const IDENTITY_HEADERS: [&str; 5] = [
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-auth-request-groups",
    "x-auth-request-access-token",
];
/// Envoy's HTTP ext_authz removes the request headers listed here on a 200.
pub const HEADERS_TO_REMOVE: HeaderName = HeaderName::from_static("x-envoy-auth-headers-to-remove");

/// Headers for the upstream request on an allow.
pub fn upstream_headers(session: &Session, cfg: &HeadersConfig) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(7);
    let mut remove: Vec<&str> = Vec::new();
    if cfg.set_xauthrequest {
        out.push((USER, header_value(&session.user)));
        out.push((EMAIL, header_value(&session.email)));
        out.push((
            PREFERRED_USERNAME,
            header_value(&session.preferred_username),
        ));
        out.push((GROUPS, header_value(&session.groups.join(","))));
    } else {
        remove.extend([
            "x-auth-request-user",
            "x-auth-request-email",
            "x-auth-request-preferred-username",
            "x-auth-request-groups",
        ]);
    }
    if cfg.pass_access_token {
        out.push((
            ACCESS_TOKEN,
            header_value(session.access_token.as_deref().unwrap_or_default()),
        ));
    } else {
        remove.push("x-auth-request-access-token");
    }
    if cfg.set_authorization_header {
        let v = session
            .id_token
            .as_deref()
            .map(|t| format!("Bearer {t}"))
            .unwrap_or_default();
        out.push((http::header::AUTHORIZATION, header_value(&v)));
    }
    if !remove.is_empty() {
        out.push((HEADERS_TO_REMOVE, header_value(&remove.join(", "))));
    }
    out
}

/// A header value from untrusted claim text: control characters (CR, LF, NUL, …) are dropped
/// so a claim can never split or end a header; other bytes pass as they are.
pub fn header_value(s: &str) -> HeaderValue {
    match HeaderValue::from_str(s) {
        Ok(v) => v,
        Err(_) => {
            let cleaned: String = s.chars().filter(|c| !c.is_control()).collect();
            HeaderValue::from_bytes(cleaned.as_bytes()).unwrap_or(HeaderValue::from_static(""))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            id: "i".into(),
            user: "alice".into(),
            email: "".into(),
            preferred_username: "Alice Ünïcode".into(),
            groups: vec!["admins".into(), "devs".into()],
            id_token: Some("IDT".into()),
            access_token: Some("AT".into()),
            created_at: 0,
            expires_at: 1,
            claims: Default::default(),
            subject: String::new(),
            sid: None,
            refresh_token: None,
            tokens_expire_at: None,
            refreshed_at: 0,
        }
    }

    fn get<'a>(h: &'a [(HeaderName, HeaderValue)], n: &str) -> Option<&'a [u8]> {
        h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_bytes())
    }

    #[test]
    fn default_headers_every_one_present_even_when_empty() {
        let cfg = HeadersConfig {
            set_xauthrequest: true,
            pass_access_token: false,
            set_authorization_header: false,
        };
        let h = upstream_headers(&session(), &cfg);
        assert_eq!(get(&h, "x-auth-request-user"), Some(&b"alice"[..]));
        assert_eq!(get(&h, "x-auth-request-email"), Some(&b""[..]));
        assert_eq!(get(&h, "x-auth-request-groups"), Some(&b"admins,devs"[..]));
        assert_eq!(
            get(&h, "x-auth-request-preferred-username"),
            Some("Alice Ünïcode".as_bytes())
        );
        assert_eq!(get(&h, "authorization"), None);
        assert_eq!(
            get(&h, "x-envoy-auth-headers-to-remove"),
            Some(&b"x-auth-request-access-token"[..])
        );
        let names: Vec<_> = h.iter().map(|(n, _)| n.as_str()).collect();
        let mut dedup = names.clone();
        dedup.dedup();
        assert_eq!(names, dedup, "each name at most once");
    }

    #[test]
    fn optional_headers() {
        let cfg = HeadersConfig {
            set_xauthrequest: false,
            pass_access_token: true,
            set_authorization_header: true,
        };
        let h = upstream_headers(&session(), &cfg);
        assert_eq!(get(&h, "x-auth-request-access-token"), Some(&b"AT"[..]));
        assert_eq!(get(&h, "authorization"), Some(&b"Bearer IDT"[..]));
        assert_eq!(get(&h, "x-auth-request-user"), None);
        let remove = std::str::from_utf8(get(&h, "x-envoy-auth-headers-to-remove").expect("r"))
            .expect("utf8");
        assert!(remove.contains("x-auth-request-user") && remove.contains("x-auth-request-groups"));
    }

    #[test]
    fn control_characters_never_reach_a_header() {
        let v = header_value("a\r\nx-evil: 1\0b");
        assert_eq!(v.as_bytes(), b"ax-evil: 1b");
    }
}
