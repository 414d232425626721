//! HTML pages: sign-in, error, signed-out and signed-in, rendered with minijinja.
//!
//! The built-in templates are compiled into the binary. An operator may override any of them
//! (`layout.html`, `sign_in.html`, `error.html`, `signed_out.html`, `signed_in.html`,
//! `style.css`) by putting a file of the same name in a custom templates directory.
//!
//! The stylesheet (`style.css`, with the accent colours of [`crate::theme`]) is rendered once
//! at load time and handed to the layout as `style`; the pages' Content-Security-Policy allows
//! exactly that text by its SHA-256 hash, so no other inline style and no script ever runs. Every template is compiled in [`Pages::load`], so a
//! syntax error stops startup instead of surfacing on a request.
//!
//! Each template gets our snake_case variables and the names oauth2-proxy's templates use
//! (`ProviderName`, `Redirect`, `ProxyPrefix`, `StatusCode`, `Title`, `Message`, `RequestID`,
//! `Footer`, `Version`), so custom templates port over by switching to Jinja syntax
//! (`{{ .ProviderName }}` becomes `{{ ProviderName }}`). Autoescaping is on for every template,
//! since all their names end in `.html`.
//!
//! Rendering never fails from the caller's point of view: if an overridden template errors at
//! render time, the error is logged and a minimal built-in page is returned instead.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use minijinja::{context, Environment, HtmlEscape, Value};

use crate::theme::{self, Rgb};

const VERSION: &str = env!("CARGO_PKG_VERSION");

const LAYOUT: &str = "layout.html";
const SIGN_IN: &str = "sign_in.html";
const ERROR: &str = "error.html";
const SIGNED_IN: &str = "signed_in.html";
const SIGNED_OUT: &str = "signed_out.html";
const STYLE: &str = "style.css";

/// The built-in templates, by the name an override file must have.
const BUILT_IN: [(&str, &str); 6] = [
    (LAYOUT, include_str!("../templates/layout.html")),
    (SIGN_IN, include_str!("../templates/sign_in.html")),
    (ERROR, include_str!("../templates/error.html")),
    (SIGNED_IN, include_str!("../templates/signed_in.html")),
    (SIGNED_OUT, include_str!("../templates/signed_out.html")),
    (STYLE, include_str!("../templates/style.css")),
];

/// Why the templates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PagesError {
    #[error("cannot read custom templates directory {}: {source}", .path.display())]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read template file {}: {source}", .path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "template syntax error in {file}{}: {detail}",
        .line.map(|l| format!(" at line {l}")).unwrap_or_default()
    )]
    Syntax {
        /// The override's path, or `built-in <name>`.
        file: String,
        line: Option<usize>,
        detail: String,
    },
}

/// What the configuration says about how the pages look (`pages.title`, `pages.logo`,
/// `pages.accent_color`).
#[derive(Debug, Clone)]
pub struct Branding {
    pub title: String,
    pub logo: Option<crate::config::Logo>,
    pub accent: Rgb,
}

impl Default for Branding {
    fn default() -> Self {
        Self {
            title: String::new(),
            logo: None,
            accent: Rgb::parse_hex(theme::DEFAULT_ACCENT).unwrap_or(Rgb(0x1e, 0x4f, 0xd6)),
        }
    }
}

impl From<&crate::config::PagesConfig> for Branding {
    fn from(c: &crate::config::PagesConfig) -> Self {
        Self {
            title: c.title.clone(),
            logo: c.logo.clone(),
            accent: c.accent_color,
        }
    }
}

/// What the sign-in page shows.
pub struct SignIn<'a> {
    pub provider_name: &'a str,
    pub proxy_prefix: &'a str,
    /// The validated URL to return to after signing in.
    pub redirect: &'a str,
    pub footer: &'a str,
    pub request_id: &'a str,
}

/// What the error page shows.
pub struct ErrorPage<'a> {
    pub status: u16,
    pub title: &'a str,
    pub message: &'a str,
    pub proxy_prefix: &'a str,
    /// Where "Sign in again" leads after signing in; `/` when empty.
    pub redirect: &'a str,
    pub footer: &'a str,
    pub request_id: &'a str,
    /// Offer "use a different account" (the signed-in account is not allowed here).
    pub switch_account: bool,
}

/// What the signed-out page shows.
pub struct SignedOut<'a> {
    pub proxy_prefix: &'a str,
    /// Where "Sign in again" leads after signing in.
    pub redirect: &'a str,
    pub footer: &'a str,
}

/// What the signed-in page shows.
pub struct SignedIn<'a> {
    pub user: &'a str,
    pub email: &'a str,
    pub groups: &'a [String],
    pub proxy_prefix: &'a str,
    pub footer: &'a str,
}

/// The compiled page templates. Cheap to share behind an `Arc`; rendering takes `&self`.
#[derive(Debug)]
pub struct Pages {
    env: Environment<'static>,
    /// One flag per page, so a broken override logs at error level once, not on every request.
    failure_logged: [AtomicBool; 4],
    /// The rendered stylesheet, and the CSP that allows exactly it.
    style: String,
    csp: String,
    branding: Branding,
}

#[derive(Clone, Copy)]
enum Page {
    SignIn,
    Error,
    SignedIn,
    SignedOut,
}

impl Page {
    const ALL: [Page; 4] = [Page::SignIn, Page::Error, Page::SignedIn, Page::SignedOut];

    fn template(self) -> &'static str {
        match self {
            Page::SignIn => SIGN_IN,
            Page::Error => ERROR,
            Page::SignedIn => SIGNED_IN,
            Page::SignedOut => SIGNED_OUT,
        }
    }
}

/// Every variable a template may use; each page fills in what it has.
#[derive(Default)]
struct Vars<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
    provider_name: &'a str,
    proxy_prefix: &'a str,
    redirect: &'a str,
    footer: &'a str,
    request_id: &'a str,
    user: &'a str,
    email: &'a str,
    groups: &'a [String],
    switch_account: bool,
}

impl Vars<'_> {
    fn context(&self, pages: &Pages) -> Value {
        let logo = pages.branding.logo.as_ref().map(|l| l.src.as_str());
        context! {
            site_title => pages.branding.title,
            logo => logo.unwrap_or_default(),
            style => Value::from_safe_string(pages.style.clone()),
            switch_account => self.switch_account,
            provider_name => self.provider_name,
            redirect => self.redirect,
            proxy_prefix => self.proxy_prefix,
            status => self.status,
            title => self.title,
            message => self.message,
            request_id => self.request_id,
            footer => self.footer,
            user => self.user,
            email => self.email,
            groups => self.groups,
            version => VERSION,
            ProviderName => self.provider_name,
            Redirect => self.redirect,
            ProxyPrefix => self.proxy_prefix,
            StatusCode => self.status,
            Title => self.title,
            Message => self.message,
            RequestID => self.request_id,
            Footer => self.footer,
            Version => VERSION,
        }
    }
}

impl Pages {
    /// [`Pages::new`] with the default look.
    pub fn load(dir: Option<&Path>) -> Result<Self, PagesError> {
        Self::new(dir, Branding::default())
    }

    /// Built-in templates, optionally overridden by files of the same name in `dir`
    /// (`sign_in.html`, `error.html`, `signed_out.html`, `signed_in.html`, `layout.html`,
    /// `style.css` — any subset). All templates are compiled here, so a syntax error is
    /// reported before serving; the stylesheet is rendered here too.
    pub fn new(dir: Option<&Path>, branding: Branding) -> Result<Self, PagesError> {
        if let Some(dir) = dir {
            check_dir(dir)?;
        }
        let mut env = Environment::new();
        for (name, source) in BUILT_IN {
            let custom = match dir {
                Some(dir) => read_override(dir, name)?,
                None => None,
            };
            let result = match custom {
                Some((path, text)) => env
                    .add_template_owned(name, text)
                    .map_err(|e| syntax_error(path.display().to_string(), &e)),
                None => env
                    .add_template(name, source)
                    .map_err(|e| syntax_error(format!("built-in {name}"), &e)),
            };
            result?;
        }
        let palette = theme::Palette::from_accent(branding.accent);
        let style = env
            .get_template(STYLE)
            .and_then(|t| t.render(context! { light => palette.light, dark => palette.dark }))
            .map_err(|e| syntax_error(STYLE.to_string(), &e))?;
        let csp = theme::page_csp(
            &theme::style_hash(&style),
            branding.logo.as_ref().and_then(|l| l.origin.as_deref()),
        );
        let pages = Pages {
            env,
            failure_logged: Default::default(),
            style,
            csp,
            branding,
        };
        pages.check_with_sample_data();
        Ok(pages)
    }

    /// The Content-Security-Policy every page must be served with.
    pub fn csp(&self) -> &str {
        &self.csp
    }

    /// The page after signing out, with a way to sign in again.
    pub fn signed_out(&self, p: &SignedOut) -> String {
        let vars = Vars {
            status: 200,
            title: "Signed out",
            proxy_prefix: p.proxy_prefix,
            redirect: p.redirect,
            footer: p.footer,
            ..Vars::default()
        };
        self.render(Page::SignedOut, &vars)
    }

    /// The page that sends the user to the identity provider.
    pub fn sign_in(&self, p: &SignIn) -> String {
        let vars = Vars {
            status: 200,
            title: "Sign in",
            provider_name: p.provider_name,
            proxy_prefix: p.proxy_prefix,
            redirect: p.redirect,
            footer: p.footer,
            request_id: p.request_id,
            ..Vars::default()
        };
        self.render(Page::SignIn, &vars)
    }

    /// The page shown when something went wrong, with a way to sign in again.
    pub fn error(&self, p: &ErrorPage) -> String {
        let vars = Vars {
            status: p.status,
            title: p.title,
            message: p.message,
            proxy_prefix: p.proxy_prefix,
            redirect: if p.redirect.is_empty() {
                "/"
            } else {
                p.redirect
            },
            footer: p.footer,
            request_id: p.request_id,
            switch_account: p.switch_account,
            ..Vars::default()
        };
        self.render(Page::Error, &vars)
    }

    /// The page that tells who is signed in, with a way to sign out.
    pub fn signed_in(&self, p: &SignedIn) -> String {
        let vars = Vars {
            status: 200,
            title: "Signed in",
            proxy_prefix: p.proxy_prefix,
            footer: p.footer,
            user: p.user,
            email: p.email,
            groups: p.groups,
            ..Vars::default()
        };
        self.render(Page::SignedIn, &vars)
    }

    fn try_render(&self, page: Page, vars: &Vars) -> Result<String, minijinja::Error> {
        self.env
            .get_template(page.template())?
            .render(vars.context(self))
    }

    fn render(&self, page: Page, vars: &Vars) -> String {
        match self.try_render(page, vars) {
            Ok(html) => html,
            Err(err) => {
                let template = page.template();
                if self.failure_logged[page as usize].swap(true, Ordering::Relaxed) {
                    tracing::debug!(template, error = %err, "template failed to render again; serving the minimal page");
                } else {
                    tracing::error!(template, error = %err, "template failed to render; serving the minimal page (later failures of this template are logged at debug level)");
                }
                fallback(page, vars)
            }
        }
    }

    /// Renders each page once with made-up values, so an override that compiles but cannot
    /// render (an unknown filter, a missing parent template) is reported at startup too.
    fn check_with_sample_data(&self) {
        let groups = ["admins".to_owned()];
        let vars = Vars {
            status: 403,
            title: "Forbidden",
            message: "You do not have access.",
            provider_name: "Example",
            proxy_prefix: "/oauth2",
            redirect: "/",
            user: "alice",
            email: "alice@example.com",
            groups: &groups,
            ..Vars::default()
        };
        for page in Page::ALL {
            if let Err(err) = self.try_render(page, &vars) {
                tracing::warn!(template = page.template(), error = %err, "template fails to render with sample values; requests may get the minimal page");
            }
        }
    }
}

/// Reads `dir/name` if it exists.
fn read_override(dir: &Path, name: &str) -> Result<Option<(PathBuf, String)>, PagesError> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some((path, text))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PagesError::ReadFile { path, source }),
    }
}

/// Checks that `dir` is a readable directory and warns about `.html` files we would ignore
/// (most likely a misspelt override).
fn check_dir(dir: &Path) -> Result<(), PagesError> {
    let read_dir_error = |source| PagesError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let known: HashSet<&str> = BUILT_IN.iter().map(|(name, _)| *name).collect();
    for entry in std::fs::read_dir(dir).map_err(read_dir_error)? {
        let name = entry.map_err(read_dir_error)?.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".html") && !known.contains(name.as_ref()) {
            tracing::warn!(dir = %dir.display(), file = %name, "ignoring unknown file in custom templates directory (expected layout.html, sign_in.html, error.html, signed_out.html, signed_in.html or style.css)");
        }
    }
    Ok(())
}

fn syntax_error(file: String, err: &minijinja::Error) -> PagesError {
    let detail = match err.detail() {
        // The variant's message already says "syntax error".
        Some(detail) if err.kind() == minijinja::ErrorKind::SyntaxError => detail.to_owned(),
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    PagesError::Syntax {
        file,
        line: err.line(),
        detail,
    }
}

/// A plain page that cannot fail, for when a template does.
fn fallback(page: Page, vars: &Vars) -> String {
    let (heading, title, message, href, label) = match page {
        Page::SignIn => (
            String::new(),
            "Sign in",
            "Sign in to continue.",
            start_url(vars),
            "Sign in",
        ),
        Page::Error => (
            format!("{} ", vars.status),
            vars.title,
            vars.message,
            start_url(vars),
            "Sign in again",
        ),
        Page::SignedIn => (
            String::new(),
            "Signed in",
            "",
            format!("{}/sign_out", vars.proxy_prefix),
            "Sign out",
        ),
        Page::SignedOut => (
            String::new(),
            "Signed out",
            "You have been signed out.",
            start_url(vars),
            "Sign in again",
        ),
    };
    let mut html = String::with_capacity(512);
    // Writing to a String cannot fail.
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title></head>\n<body><main><h1>{heading}{title}</h1>\n",
        title = HtmlEscape(title),
    );
    if !message.is_empty() {
        let _ = writeln!(html, "<p>{}</p>", HtmlEscape(message));
    }
    if !vars.user.is_empty() {
        let _ = writeln!(html, "<p>Signed in as {}</p>", HtmlEscape(vars.user));
    }
    if !vars.request_id.is_empty() {
        let _ = writeln!(html, "<p>Request ID: {}</p>", HtmlEscape(vars.request_id));
    }
    let _ = writeln!(
        html,
        "<p><a href=\"{}\">{label}</a></p></main></body></html>",
        HtmlEscape(&href)
    );
    html
}

fn start_url(vars: &Vars) -> String {
    if vars.redirect.is_empty() {
        return format!("{}/start", vars.proxy_prefix);
    }
    // The filter only fails for values that cannot be iterated; a string always can.
    let rd = minijinja::filters::urlencode(&Value::from(vars.redirect)).unwrap_or_default();
    format!("{}/start?rd={rd}", vars.proxy_prefix)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(files: &[(&str, &str)]) -> Self {
            static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let dir = std::env::temp_dir().join(format!(
                "portcullis-pages-{}-{nanos}-{n}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            for (name, text) in files {
                std::fs::write(dir.join(name), text).unwrap();
            }
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn sign_in_page(redirect: &str) -> SignIn<'_> {
        SignIn {
            provider_name: "Keycloak",
            proxy_prefix: "/oauth2",
            redirect,
            footer: "",
            request_id: "req-1",
        }
    }

    fn error_page(message: &str) -> ErrorPage<'_> {
        ErrorPage {
            status: 403,
            title: "Forbidden",
            message,
            proxy_prefix: "/oauth2",
            redirect: "/app?x=1&y=2",
            footer: "",
            request_id: "abc-123",
            switch_account: false,
        }
    }

    /// minijinja's HTML escaping also turns `/` into `&#x2f;` (browsers read it as `/`);
    /// undo that to keep the expected links readable.
    fn slashes(html: &str) -> String {
        html.replace("&#x2f;", "/")
    }

    fn builtin() -> Pages {
        Pages::load(None).unwrap()
    }

    #[test]
    fn pages_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Pages>();
    }

    #[test]
    fn html_names_are_autoescaped() {
        assert_eq!(
            minijinja::default_auto_escape_callback("sign_in.html"),
            minijinja::AutoEscape::Html
        );
    }

    #[test]
    fn sign_in_renders_with_urlencoded_redirect() {
        let html = slashes(&builtin().sign_in(&sign_in_page("/app/page?a=1&b=two words#frag")));
        assert!(html.starts_with("<!doctype html>"), "{html}");
        assert!(html.contains("<html lang=\"en\">"));
        assert!(html.contains("Sign in with Keycloak"));
        assert!(
            html.contains("href=\"/oauth2/start?rd=/app/page%3Fa%3D1%26b%3Dtwo%20words%23frag\""),
            "{html}"
        );
        assert!(html.contains("Secured by portcullis"));
    }

    #[test]
    fn sign_in_without_redirect_links_to_start() {
        let html = slashes(&builtin().sign_in(&sign_in_page("")));
        assert!(html.contains("href=\"/oauth2/start\""), "{html}");
    }

    #[test]
    fn sign_in_escapes_everything() {
        let pages = builtin();
        let html = pages.sign_in(&SignIn {
            provider_name: "<script>alert(1)</script>",
            proxy_prefix: "/oauth2",
            redirect: "/\"><script>alert(2)</script>",
            footer: "<b>footer</b>",
            request_id: "",
        });
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<b>footer"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
            "{html}"
        );
        assert!(html.contains("&lt;b&gt;footer&lt;&#x2f;b&gt;"), "{html}");
        assert!(
            slashes(&html).contains("rd=/%22%3E%3Cscript%3Ealert%282%29%3C/script%3E\""),
            "{html}"
        );
    }

    #[test]
    fn error_page_renders_and_escapes() {
        let html = builtin().error(&error_page("Bad <script>alert('x')</script> & more"));
        assert!(html.contains("Error 403"), "{html}");
        assert!(html.contains("<title>Forbidden</title>"), "{html}");
        assert!(html.contains("Forbidden"));
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("Bad &lt;script&gt;alert(&#x27;x&#x27;)&lt;&#x2f;script&gt; &amp; more")
        );
        assert!(html.contains("abc-123"));
        assert!(html.contains("Try again"));
        assert!(!html.contains("prompt=login"), "{html}");
        assert!(
            slashes(&html).contains("href=\"/oauth2/start?rd=/app%3Fx%3D1%26y%3D2\""),
            "{html}"
        );
    }

    #[test]
    fn error_page_defaults_redirect_to_root() {
        let mut page = error_page("m");
        page.redirect = "";
        let html = slashes(&builtin().error(&page));
        assert!(html.contains("href=\"/oauth2/start?rd=/\""), "{html}");
    }

    #[test]
    fn error_page_hides_empty_request_id() {
        let mut page = error_page("m");
        page.request_id = "";
        let html = builtin().error(&page);
        assert!(!html.contains("Request ID"), "{html}");
    }

    #[test]
    fn footer_replaces_default() {
        let mut page = error_page("m");
        page.footer = "ACME Corp IT";
        let html = builtin().error(&page);
        assert!(html.contains("ACME Corp IT"));
        assert!(!html.contains("Secured by portcullis"));
    }

    #[test]
    fn signed_in_renders_and_escapes() {
        let groups = vec!["admins".to_owned(), "<script>x</script>".to_owned()];
        let html = builtin().signed_in(&SignedIn {
            user: "<script>alice</script>",
            email: "alice@example.com",
            groups: &groups,
            proxy_prefix: "/oauth2",
            footer: "",
        });
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("Signed in as <strong>&lt;script&gt;alice&lt;&#x2f;script&gt;</strong>"),
            "{html}"
        );
        assert!(html.contains("alice@example.com"));
        assert!(html.contains("<li>admins</li>"));
        assert!(html.contains("<li>&lt;script&gt;x&lt;&#x2f;script&gt;</li>"));
        assert!(slashes(&html).contains("href=\"/oauth2/sign_out\""));
    }

    #[test]
    fn signed_in_without_email_or_groups() {
        let html = builtin().signed_in(&SignedIn {
            user: "bob",
            email: "",
            groups: &[],
            proxy_prefix: "",
            footer: "",
        });
        assert!(html.contains("<strong>bob</strong>"));
        assert!(!html.contains("<dl>"), "{html}");
        assert!(slashes(&html).contains("href=\"/sign_out\""));
    }

    #[test]
    fn oauth2_proxy_names_work_in_overrides() {
        let dir = TempDir::new(&[
            (
                "sign_in.html",
                "<p>{{ ProviderName }}|{{ ProxyPrefix }}|{{ Redirect }}|{{ Redirect|urlencode }}|{{ Footer }}|{{ Version }}|{{ StatusCode }}|{{ SignInMessage }}</p>",
            ),
            (
                "error.html",
                "<p>{{ StatusCode }}|{{ Title }}|{{ Message }}|{{ RequestID }}|{{ Redirect }}|{{ ProxyPrefix }}</p>",
            ),
        ]);
        let pages = Pages::load(Some(&dir.0)).unwrap();
        let mut page = sign_in_page("/a?b=<c>");
        page.footer = "foot";
        let html = pages.sign_in(&page);
        assert_eq!(
            html,
            format!(
                "<p>Keycloak|&#x2f;oauth2|&#x2f;a?b=&lt;c&gt;|&#x2f;a%3Fb%3D%3Cc%3E|foot|{VERSION}|200|</p>"
            )
        );
        let html = pages.error(&error_page("<nope>"));
        assert_eq!(
            html,
            "<p>403|Forbidden|&lt;nope&gt;|abc-123|&#x2f;app?x=1&amp;y=2|&#x2f;oauth2</p>"
        );
        // Pages without an override still use the built-in template.
        let html = pages.signed_in(&SignedIn {
            user: "carol",
            email: "",
            groups: &[],
            proxy_prefix: "/oauth2",
            footer: "",
        });
        assert!(html.contains("You're signed in"));
    }

    #[test]
    fn layout_override_applies_to_built_in_pages() {
        let dir = TempDir::new(&[(
            "layout.html",
            "<html><body class=\"custom\">{% block content %}{% endblock %}</body></html>",
        )]);
        let pages = Pages::load(Some(&dir.0)).unwrap();
        let html = pages.sign_in(&sign_in_page("/"));
        assert!(html.starts_with("<html><body class=\"custom\">"), "{html}");
        assert!(html.contains("Sign in with Keycloak"));
    }

    #[test]
    fn syntax_error_names_the_file_and_line() {
        let dir = TempDir::new(&[("error.html", "<p>ok</p>\n<p>{% if %}</p>\n")]);
        let err = Pages::load(Some(&dir.0)).unwrap_err();
        let msg = err.to_string();
        let path = dir.0.join("error.html");
        assert!(msg.starts_with("template syntax error in "), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.ends_with("at line 2: unexpected end of block"), "{msg}");
        assert!(
            matches!(err, PagesError::Syntax { line: Some(2), .. }),
            "{err:?}"
        );
    }

    #[test]
    fn missing_dir_is_a_load_error() {
        let dir = TempDir::new(&[]);
        let missing = dir.0.join("nope");
        let err = Pages::load(Some(&missing)).unwrap_err();
        assert!(matches!(err, PagesError::ReadDir { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("cannot read custom templates directory "),
            "{msg}"
        );
        assert!(msg.contains("nope"), "{msg}");
    }

    #[test]
    fn file_instead_of_dir_is_a_load_error() {
        let dir = TempDir::new(&[("not-a-dir", "x")]);
        let err = Pages::load(Some(&dir.0.join("not-a-dir"))).unwrap_err();
        assert!(matches!(err, PagesError::ReadDir { .. }), "{err:?}");
    }

    #[test]
    fn unreadable_file_is_a_load_error() {
        // A directory where a template file should be cannot be read as one.
        let dir = TempDir::new(&[]);
        std::fs::create_dir(dir.0.join("sign_in.html")).unwrap();
        let err = Pages::load(Some(&dir.0)).unwrap_err();
        assert!(matches!(err, PagesError::ReadFile { .. }), "{err:?}");
        assert!(err.to_string().contains("sign_in.html"), "{err}");
    }

    #[test]
    fn render_error_falls_back_to_minimal_page() {
        // Unknown filters and functions are looked up at render time, so these compile.
        let dir = TempDir::new(&[
            ("error.html", "<p>{{ Message|no_such_filter }}</p>"),
            ("signed_in.html", "<p>{{ no_such_function() }}</p>"),
            ("sign_in.html", "{% extends \"missing.html\" %}"),
        ]);
        let pages = Pages::load(Some(&dir.0)).unwrap();

        let html = pages.error(&error_page("<script>boom</script>"));
        assert!(html.contains("<h1>403 Forbidden</h1>"), "{html}");
        assert!(html.contains("&lt;script&gt;boom"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("abc-123"), "{html}");
        assert!(
            html.contains("start?rd=&#x2f;app%3Fx%3D1%26y%3D2\""),
            "{html}"
        );
        // A second failure takes the same path (logged at debug level this time).
        assert_eq!(pages.error(&error_page("<script>boom</script>")), html);

        let html = pages.signed_in(&SignedIn {
            user: "<i>dave</i>",
            email: "",
            groups: &[],
            proxy_prefix: "/oauth2",
            footer: "",
        });
        assert!(html.contains("Signed in as &lt;i&gt;dave"), "{html}");
        assert!(
            html.contains("href=\"&#x2f;oauth2&#x2f;sign_out\""),
            "{html}"
        );

        let html = pages.sign_in(&sign_in_page("/x y"));
        assert!(html.contains("<h1>Sign in</h1>"), "{html}");
        assert!(html.contains("rd=&#x2f;x%20y"), "{html}");
    }
}
