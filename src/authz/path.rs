//! The one canonical form of a request path that rules are matched against (pure).
//!
//! The gateway forwards the path it received; the application behind it may read it
//! differently (decode `%2F`, resolve `..`, merge `//`, drop `;params`). A rule must see what
//! the application will act on, so the canonical form is the *most resolved* reading, and
//! anything that two reasonable servers could read as different paths is refused as ambiguous:
//!
//! - percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded once; other
//!   escapes stay encoded, with uppercase hex;
//! - encoded `/`, `\`, `?`, `#` or `;`, dot segments spelled with escapes (`%2e%2e`), NUL, control characters,
//!   a raw `\` or `#`, broken escapes and escapes that decode to invalid UTF-8 (overlong forms)
//!   are ambiguous;
//! - `;params` are removed from every segment (Tomcat and others ignore them); a dot segment
//!   with parameters (`..;x`) is ambiguous;
//! - empty segments are merged (`//admin` is `/admin`);
//! - dot segments are resolved (RFC 3986 §5.2.4), never above the root.
//!
//! Matching is case-sensitive: `/ADMIN` is not `/admin`.

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ambiguous(pub &'static str);

impl std::fmt::Display for Ambiguous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ambiguous path: {}", self.0)
    }
}

/// Longest path considered (longer ones are ambiguous: no rule needs them).
pub const MAX_PATH: usize = 8192;

/// Canonicalise `path` (no query; it may still hold a `#`).
pub fn canonical(path: &str) -> Result<String, Ambiguous> {
    if path.len() > MAX_PATH {
        return Err(Ambiguous("too long"));
    }
    if already_canonical(path) {
        return Ok(path.to_string());
    }
    resolve(path)
}

/// Whether `path` is its own canonical form, which is what nearly every request has: printable
/// ASCII without `%`, `;`, `\` or `#` (nothing to decode, no parameters, nothing ambiguous), and
/// no empty (`//`) or dot segment. An empty last segment is a trailing slash, which is kept.
/// [`resolve`] gives the same answer for these paths (a property test checks it); this only
/// spares it the per-segment allocations.
fn already_canonical(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let plain = path
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && !matches!(b, b'%' | b';' | b'\\' | b'#'));
    if !plain {
        return false;
    }
    let mut segments = rest.split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if (seg.is_empty() && !last) || seg == "." || seg == ".." {
            return false;
        }
    }
    true
}

/// The full resolution behind [`canonical`] (see the module docs).
fn resolve(path: &str) -> Result<String, Ambiguous> {
    if !path.starts_with('/') {
        return Err(Ambiguous("not absolute"));
    }
    check_full_decode(path)?;
    let mut segments: Vec<String> = Vec::new();
    // The same resolution keeping empty segments (RFC 3986 §5.2.4, WHATWG), for the check below.
    let mut rfc: Vec<String> = Vec::new();
    for raw in path.split('/').skip(1) {
        // Path parameters: `/admin;x` is `/admin` to many servers.
        let (raw, params) = raw.split_once(';').map_or((raw, false), |(r, _)| (r, true));
        if raw.eq_ignore_ascii_case("%2e") || raw.eq_ignore_ascii_case("%2e%2e") {
            return Err(Ambiguous("encoded dot segment"));
        }
        let lower = raw.to_ascii_lowercase();
        if lower.contains("%2e") && lower.replace("%2e", ".").chars().all(|c| c == '.') {
            return Err(Ambiguous("encoded dot segment"));
        }
        let seg = decode_unreserved(raw)?;
        // `/internal/..;x/public` is `/public` to a server that drops parameters (Tomcat) and a
        // path under `/internal` to one that keeps them (nginx): two readings.
        if params && matches!(seg.as_str(), "." | "..") {
            return Err(Ambiguous("dot segment with parameters"));
        }
        match seg.as_str() {
            "." => {}
            ".." => {
                rfc.pop();
            }
            _ => rfc.push(seg.clone()),
        }
        match seg.as_str() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(seg),
        }
    }
    // `/admin//..` is `/` once `//` is merged first, but `/admin/` to RFC 3986 and WHATWG
    // resolution (Envoy's normalize_path, browsers, most frameworks), where `..` only removes
    // the empty segment. Two readings: ambiguous.
    if !rfc.iter().filter(|s| !s.is_empty()).eq(segments.iter()) {
        return Err(Ambiguous("dot-dot after an empty segment"));
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    // Keep a trailing slash: `/admin/` and `/admin` may be different resources.
    let trailing_slash = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// Refuse what any full decoding reveals: separators, NUL and controls, invalid UTF-8.
fn check_full_decode(path: &str) -> Result<(), Ambiguous> {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(Ambiguous("broken percent-escape"))?;
                match hex {
                    b'/' | b'\\' => return Err(Ambiguous("encoded slash")),
                    b'%' => return Err(Ambiguous("double encoding")),
                    // A server that decodes before it splits off the query or fragment (nginx
                    // passing its decoded `$uri` upstream) reads `/admin%3F/../public` as
                    // `/admin`, where the rules read `/public`; one that decodes before it drops
                    // parameters reads `/internal%3B` as `/internal`.
                    b'?' | b'#' | b';' => return Err(Ambiguous("encoded ?, # or ;")),
                    _ => {}
                }
                decoded.push(hex);
                i += 3;
            }
            b'\\' => return Err(Ambiguous("backslash")),
            b'#' => return Err(Ambiguous("fragment")),
            _ => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let text = std::str::from_utf8(&decoded).map_err(|_| Ambiguous("invalid UTF-8"))?;
    if text.chars().any(char::is_control) {
        return Err(Ambiguous("control character"));
    }
    Ok(())
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decode escapes of unreserved characters; uppercase the hex of the others.
fn decode_unreserved(seg: &str) -> Result<String, Ambiguous> {
    let bytes = seg.as_bytes();
    let mut out = String::with_capacity(seg.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let h = seg
                .get(i + 1..i + 3)
                .ok_or(Ambiguous("broken percent-escape"))?;
            let v = u8::from_str_radix(h, 16).map_err(|_| Ambiguous("broken percent-escape"))?;
            if is_unreserved(v) {
                out.push(char::from(v));
            } else {
                out.push('%');
                out.push_str(&h.to_ascii_uppercase());
            }
            i += 3;
        } else {
            // Non-escape bytes are copied through as the original text (UTF-8 stays intact).
            let next = seg[i..].find('%').map_or(seg.len(), |n| i + n);
            out.push_str(&seg[i..next]);
            i = next;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        let cases = [
            ("/", "/"),
            ("/admin", "/admin"),
            ("/admin/", "/admin/"),
            ("//admin", "/admin"),
            ("/a//b///c", "/a/b/c"),
            ("/public/../admin", "/admin"),
            ("/public/./admin", "/public/admin"),
            ("/../../admin", "/admin"),
            ("/a/b/..", "/a/"),
            ("/admin;x", "/admin"),
            ("/admin;jsessionid=1/x", "/admin/x"),
            ("/%61dmin", "/admin"),
            ("/a%7eb", "/a~b"),
            ("/a%2eb", "/a.b"),
            ("/x%20y", "/x%20y"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/café", "/café"),
            ("/ADMIN", "/ADMIN"),
        ];
        for (input, want) in cases {
            assert_eq!(canonical(input).as_deref(), Ok(want), "{input}");
        }
    }

    /// Found by fuzz/fuzz_targets/path.rs: merging `//` before resolving `..` read
    /// `/admin//..` as `/`, where RFC 3986 / WHATWG resolution reads `/admin/`.
    #[test]
    fn dot_dot_after_an_empty_segment_is_ambiguous() {
        for p in [
            "/admin//..",
            "/admin//../",
            "/a/b//../..",
            "/////////////$/.///..",
            "/x//./..",
        ] {
            assert_eq!(
                canonical(p),
                Err(Ambiguous("dot-dot after an empty segment")),
                "{p}"
            );
        }
        // Empty segments that no `..` reaches, or `..` that removes a real segment, are fine.
        assert_eq!(canonical("//admin/..").as_deref(), Ok("/"));
        assert_eq!(canonical("/a//b/../c").as_deref(), Ok("/a/c"));
        assert_eq!(canonical("/a/b/..//c").as_deref(), Ok("/a/c"));
    }

    #[test]
    fn path_confusion_corpus_is_refused() {
        let refused = [
            "/admin%2f..",
            "/admin%2F",
            "/public%2f..%2fadmin",
            "/admin%5c",
            "/public\\..\\admin",
            "/%2e%2e/admin",
            "/public/%2e%2e/admin",
            "/public/%2E%2E/admin",
            "/public/.%2e/admin",
            "/public/%2e./admin",
            "/public/%2e/admin",
            "/admin%00",
            "/admin%00.html",
            "/admin\0",
            "/admin#",
            "/admin#frag",
            "/admin%0a",
            "/admin%0d%0a",
            "/admin%09",
            "/%c0%af",
            "/%c0%ae%c0%ae/admin",
            "/%e0%80%af",
            "/%ff",
            "/admin%",
            "/admin%2",
            "/admin%zz",
            "/admin%252f",
            "/x%3fy",
            "/admin%3F/../public/x",
            "/admin%23/../public/x",
            "/;x%23/public",
            "/internal%3B",
            "/internal%3bx/y",
            "/internal/..;internal/public//",
            "/admin/..;/public",
            "/public/.;x/../admin",
            "/a/..;",
            "/admin%25",
            "admin",
            "",
        ];
        for p in refused {
            assert!(
                canonical(p).is_err(),
                "{p:?} must be refused, got {:?}",
                canonical(p)
            );
        }
        assert!(canonical(&format!("/{}", "a".repeat(MAX_PATH))).is_err());
    }

    #[test]
    fn fast_path_agrees_with_the_full_resolution() {
        for p in [
            "/",
            "/admin",
            "/admin/",
            "/a/b/c",
            "/a-b_c~d/e.f",
            "/.well-known/x",
            "/a/.../b",
            "/x y",
            "/a?b",
            "/a:b@c!$&'()*+,=",
            "//a",
            "/a//",
            "/.",
            "/..",
            "/a/./b",
            "/a/../b",
            "/a/.",
            "/a;x",
            "/a%41",
            "/a\\b",
            "/a#b",
            "/caf\u{e9}",
            "/a\u{85}",
            "/a\u{7f}",
        ] {
            assert_eq!(canonical(p), resolve(p), "{p:?}");
            if already_canonical(p) {
                assert_eq!(resolve(p).as_deref(), Ok(p), "{p:?}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_path_is_the_full_resolution(s in "/[a-zA-Z0-9%./;_~# \\\\-]{0,40}") {
            proptest::prop_assert_eq!(canonical(&s), resolve(&s));
            if already_canonical(&s) {
                proptest::prop_assert_eq!(resolve(&s), Ok(s.clone()));
            }
        }

        #[test]
        fn canonical_is_stable_and_never_panics(s in "/[a-zA-Z0-9%./;_~-]{0,40}") {
            if let Ok(c) = canonical(&s) {
                proptest::prop_assert!(c.starts_with('/'));
                proptest::prop_assert!(!c.contains("//"));
                proptest::prop_assert!(!c.split('/').any(|seg| seg == ".." || seg == "."));
                proptest::prop_assert_eq!(canonical(&c), Ok(c.clone()), "idempotent");
            }
        }
    }
}
