//! The look of portcullis's pages that comes from configuration: the accent colour (and the
//! colours derived from it so that every pair stays readable), the optional logo, and the
//! Content-Security-Policy that lets exactly our one stylesheet and the logo in.
//!
//! Contrast follows WCAG 2.2 (relative luminance, ratio ≥ 4.5:1 for text): a configured accent
//! is used as is for the button, and darkened (light scheme) or lightened (dark scheme) where it
//! is used as text on the card.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The accent colour of the default theme.
pub const DEFAULT_ACCENT: &str = "#1e4fd6";
/// The card behind text in the light and dark schemes (also in `templates/style.css`).
pub const CARD_LIGHT: Rgb = Rgb(0xff, 0xff, 0xff);
pub const CARD_DARK: Rgb = Rgb(0x15, 0x1c, 0x2b);
const INK_LIGHT: Rgb = Rgb(0x11, 0x18, 0x27);
const WHITE: Rgb = Rgb(0xff, 0xff, 0xff);
const BLACK: Rgb = Rgb(0, 0, 0);
/// WCAG AA for normal text.
pub const MIN_CONTRAST: f64 = 4.5;

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// `#rgb` or `#rrggbb` (case-insensitive); anything else is `None`.
    pub fn parse_hex(s: &str) -> Option<Rgb> {
        let hex = s.strip_prefix('#')?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let digit = |i: usize, len: usize| u8::from_str_radix(&hex[i..i + len], 16).ok();
        match hex.len() {
            3 => Some(Rgb(digit(0, 1)? * 17, digit(1, 1)? * 17, digit(2, 1)? * 17)),
            6 => Some(Rgb(digit(0, 2)?, digit(2, 2)?, digit(4, 2)?)),
            _ => None,
        }
    }

    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }

    /// WCAG relative luminance.
    pub fn luminance(self) -> f64 {
        let channel = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(self.0) + 0.7152 * channel(self.1) + 0.0722 * channel(self.2)
    }

    /// `self` moved towards `other` by `t` (0 = self, 1 = other).
    fn mix(self, other: Rgb, t: f64) -> Rgb {
        let m = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * t).round() as u8;
        Rgb(m(self.0, other.0), m(self.1, other.1), m(self.2, other.2))
    }
}

/// WCAG contrast ratio of two colours (1 to 21).
pub fn contrast(a: Rgb, b: Rgb) -> f64 {
    let (la, lb) = (a.luminance(), b.luminance());
    let (hi, lo) = if la > lb { (la, lb) } else { (lb, la) };
    (hi + 0.05) / (lo + 0.05)
}

/// The accent colours of one scheme, every one readable where it is used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccentSet {
    /// Button background.
    pub fill: String,
    /// Button background on hover.
    pub hover: String,
    /// Text on the button (≥ 4.5:1 against `fill` and `hover`).
    pub on_fill: String,
    /// Accent used as text or outline on the card (≥ 4.5:1 against the card).
    pub text: String,
}

/// Accent colours for the light and the dark scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Palette {
    pub light: AccentSet,
    pub dark: AccentSet,
}

impl Palette {
    /// Derive both schemes from one accent colour.
    pub fn from_accent(accent: Rgb) -> Palette {
        // Light scheme: the accent as configured, unless neither white nor dark text reads on
        // it (mid greys); text on the white card darkened if needed.
        let fill = if contrast(WHITE, accent).max(contrast(INK_LIGHT, accent)) >= MIN_CONTRAST {
            accent
        } else {
            until_readable(accent, BLACK, WHITE)
        };
        let light_text = until_readable(accent, BLACK, CARD_LIGHT);
        let light_hover = fill.mix(BLACK, 0.18);
        // Dark scheme: lighten until it reads on the dark card, and use that for the button too.
        let dark_fill = until_readable(accent, WHITE, CARD_DARK);
        let dark_hover = dark_fill.mix(WHITE, 0.25);
        Palette {
            light: AccentSet {
                fill: fill.hex(),
                hover: light_hover.hex(),
                on_fill: on(fill, light_hover).hex(),
                text: light_text.hex(),
            },
            dark: AccentSet {
                fill: dark_fill.hex(),
                hover: dark_hover.hex(),
                on_fill: on(dark_fill, dark_hover).hex(),
                text: dark_fill.hex(),
            },
        }
    }
}

/// `c` mixed towards `towards` in small steps until it has `MIN_CONTRAST` against `bg`.
fn until_readable(c: Rgb, towards: Rgb, bg: Rgb) -> Rgb {
    (0..=40)
        .map(|step| c.mix(towards, f64::from(step) / 40.0))
        .find(|x| contrast(*x, bg) >= MIN_CONTRAST)
        .unwrap_or(towards)
}

/// White or near-black text, whichever reads better on both backgrounds.
fn on(fill: Rgb, hover: Rgb) -> Rgb {
    let worst = |t: Rgb| contrast(t, fill).min(contrast(t, hover));
    if worst(WHITE) >= worst(INK_LIGHT) {
        WHITE
    } else {
        INK_LIGHT
    }
}

/// `'sha256-…'` source expression for an inline `<style>` whose text is exactly `css`.
pub fn style_hash(css: &str) -> String {
    let digest = Sha256::digest(css.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The Content-Security-Policy of our HTML pages: nothing is loaded or run except the one
/// stylesheet (by hash) and images from `data:` URIs (the logo) or the logo's https origin.
/// No script at all, no forms, no framing, no `<base>`.
pub fn page_csp(style_hash: &str, logo_origin: Option<&str>) -> String {
    let img = match logo_origin {
        Some(origin) => format!("data: {origin}"),
        None => "data:".to_string(),
    };
    format!(
        "default-src 'none'; style-src {style_hash}; img-src {img}; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'"
    )
}

/// The Content-Security-Policy of every other answer (redirects, JSON): nothing at all.
pub const STRICT_CSP: &str =
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_colours() {
        assert_eq!(Rgb::parse_hex("#1e4fd6"), Some(Rgb(0x1e, 0x4f, 0xd6)));
        assert_eq!(Rgb::parse_hex("#1E4FD6"), Some(Rgb(0x1e, 0x4f, 0xd6)));
        assert_eq!(Rgb::parse_hex("#fc0"), Some(Rgb(0xff, 0xcc, 0x00)));
        for bad in [
            "",
            "#",
            "1e4fd6",
            "#1e4fd",
            "#1e4fd6ff",
            "#ggg",
            "red",
            "#+1+1+1",
            "#é12",
        ] {
            assert_eq!(Rgb::parse_hex(bad), None, "{bad}");
        }
    }

    #[test]
    fn contrast_matches_wcag_examples() {
        assert!((contrast(BLACK, WHITE) - 21.0).abs() < 1e-9);
        assert!((contrast(WHITE, WHITE) - 1.0).abs() < 1e-9);
        // #767676 on white is the classic 4.54:1.
        let grey = Rgb(0x76, 0x76, 0x76);
        assert!((contrast(grey, WHITE) - 4.54).abs() < 0.01);
    }

    #[test]
    fn every_derived_pair_is_readable_for_any_accent() {
        let accents = [
            DEFAULT_ACCENT,
            "#000000",
            "#ffffff",
            "#ffcc00",
            "#00ff00",
            "#777777",
            "#e11d48",
            "#0f766e",
            "#151c2b",
            "#7c3aed",
        ];
        for a in accents {
            let p = Palette::from_accent(Rgb::parse_hex(a).unwrap_or(BLACK));
            for (set, card) in [(&p.light, CARD_LIGHT), (&p.dark, CARD_DARK)] {
                let c = |s: &str| Rgb::parse_hex(s).unwrap_or(BLACK);
                assert!(
                    contrast(c(&set.text), card) >= MIN_CONTRAST,
                    "{a}: text {set:?}"
                );
                assert!(
                    contrast(c(&set.on_fill), c(&set.fill)) >= MIN_CONTRAST,
                    "{a}: button {set:?}"
                );
                assert!(
                    contrast(c(&set.on_fill), c(&set.hover)) >= 3.0,
                    "{a}: hover {set:?}"
                );
            }
        }
    }

    #[test]
    fn default_accent_is_used_as_is_in_light_mode() {
        let p = Palette::from_accent(Rgb::parse_hex(DEFAULT_ACCENT).unwrap_or(BLACK));
        assert_eq!(p.light.fill, DEFAULT_ACCENT);
        assert_eq!(p.light.text, DEFAULT_ACCENT);
        assert_eq!(p.light.on_fill, "#ffffff");
    }

    #[test]
    fn csp_allows_only_the_style_hash_and_logo() {
        let h = style_hash("body{}");
        assert!(h.starts_with("'sha256-") && h.ends_with("='"), "{h}");
        let csp = page_csp(&h, None);
        assert!(csp.contains(&format!("style-src {h};")), "{csp}");
        assert!(csp.contains("img-src data:;"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert!(
            !csp.contains("script-src"),
            "default-src 'none' covers scripts: {csp}"
        );
        let csp = page_csp(&h, Some("https://cdn.example.com"));
        assert!(
            csp.contains("img-src data: https://cdn.example.com;"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
    }
}
