//! The return-URL validator (`redirect::validate`).
//!
//! Invariants, judged with the `url` crate (the WHATWG parser, as a browser reads a
//! `Location` header) and independently of `AllowedDomain`:
//! * an accepted value is non-empty visible ASCII;
//! * a relative one starts with exactly one `/`, and resolved against the application's
//!   origin it stays on that origin (also with `\` read as `/`, and after one more round of
//!   percent-decoding, as a sloppy server might);
//! * an absolute one is http(s), has no userinfo, and its host (and port) is on the allow-list;
//! * validating an accepted value again accepts it unchanged.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;
use portcullis::redirect::{validate, AllowedDomain};
use url::{Host, Url};

const ALLOWED: &[&str] = &[
    "app.example.com",
    "*.example.org",
    "example.net:8443",
    "127.0.0.1:*",
    "[::1]",
];

#[derive(Debug, Arbitrary)]
enum Input {
    Raw(String),
    Pieces(Vec<Piece>),
}

#[derive(Debug, Arbitrary)]
enum Piece {
    Http,
    Https,
    SlashSlash,
    Slash,
    Backslash,
    At,
    Colon,
    Dot,
    Allowed(u8),
    Evil,
    Port(u16),
    Escape(u8),
    Char(char),
    Raw(String),
}

fn allowed() -> &'static [AllowedDomain] {
    static A: OnceLock<Vec<AllowedDomain>> = OnceLock::new();
    A.get_or_init(|| {
        ALLOWED
            .iter()
            .map(|e| AllowedDomain::parse(e).unwrap())
            .collect()
    })
}

/// The allow-list, restated: which (host, effective port) a browser may be sent to.
fn host_allowed(url: &Url) -> bool {
    let port = url.port();
    let effective = url.port_or_known_default();
    match url.host() {
        Some(Host::Domain(d)) => {
            (d == "app.example.com" && port.is_none())
                || ((d == "example.org" || d.ends_with(".example.org")) && port.is_none())
                || (d == "example.net" && effective == Some(8443))
        }
        Some(Host::Ipv4(ip)) => ip.to_string() == "127.0.0.1",
        Some(Host::Ipv6(ip)) => ip.to_string() == "::1" && port.is_none(),
        None => false,
    }
}

const ORIGIN: &str = "https://app.example.com";

fn stays(base: &Url, s: &str) -> bool {
    match base.join(s) {
        Ok(u) => u.origin() == base.origin(),
        Err(_) => true, // a browser would not navigate anywhere
    }
}

fuzz_target!(|input: Input| {
    let raw = match input {
        Input::Raw(s) => s,
        Input::Pieces(ps) => {
            let mut s = String::new();
            for p in ps {
                match p {
                    Piece::Http => s.push_str("http:"),
                    Piece::Https => s.push_str("https:"),
                    Piece::SlashSlash => s.push_str("//"),
                    Piece::Slash => s.push('/'),
                    Piece::Backslash => s.push('\\'),
                    Piece::At => s.push('@'),
                    Piece::Colon => s.push(':'),
                    Piece::Dot => s.push('.'),
                    Piece::Allowed(i) => s.push_str(
                        [
                            "app.example.com",
                            "a.example.org",
                            "example.net",
                            "127.0.0.1",
                            "[::1]",
                        ][usize::from(i) % 5],
                    ),
                    Piece::Evil => s.push_str("evil.com"),
                    Piece::Port(p) => s.push_str(&format!(":{p}")),
                    Piece::Escape(b) => s.push_str(&format!("%{b:02x}")),
                    Piece::Char(c) => s.push(c),
                    Piece::Raw(r) => s.push_str(&r),
                }
            }
            s
        }
    };
    let Some(rt) = validate(&raw, allowed()) else {
        return;
    };
    let v = rt.as_str();
    assert!(
        !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic()),
        "{raw:?} -> {v:?}"
    );
    let base = Url::parse(&format!("{ORIGIN}/some/page")).unwrap();
    if rt.is_relative() {
        assert!(
            v.starts_with('/') && !v.starts_with("//"),
            "{raw:?} -> {v:?}"
        );
        assert!(stays(&base, v), "{raw:?} -> {v:?} leaves the origin");
        assert!(
            stays(&base, &v.replace('\\', "/")),
            "{raw:?} -> {v:?} with \\ as /"
        );
        let once = percent_decode_str(v).decode_utf8_lossy().into_owned();
        let path = once.split(['?', '#']).next().unwrap_or("");
        assert!(
            stays(&base, path),
            "{raw:?} -> {v:?} decoded once: {path:?}"
        );
        let abs = Url::parse(&rt.absolute(ORIGIN)).expect("absolute form parses");
        assert_eq!(
            abs.origin(),
            base.origin(),
            "{raw:?} -> {:?}",
            rt.absolute(ORIGIN)
        );
    } else {
        let url = Url::parse(v).expect("an accepted absolute URL parses");
        assert!(matches!(url.scheme(), "http" | "https"), "{raw:?} -> {v:?}");
        assert!(
            url.username().is_empty() && url.password().is_none(),
            "{raw:?} -> {v:?}"
        );
        assert!(
            host_allowed(&url),
            "{raw:?} -> {v:?}: host {:?} not allowed",
            url.host()
        );
        // A second look by the same parser from the raw input agrees.
        if let Ok(orig) = Url::parse(&raw) {
            assert_eq!(orig.host(), url.host(), "{raw:?} -> {v:?}");
        }
    }
    assert_eq!(
        validate(v, allowed()).as_ref(),
        Some(&rt),
        "re-validating {v:?} (from {raw:?})"
    );
});
