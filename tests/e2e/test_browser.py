"""The sign-in experience in a real browser: headless Chromium (WebDriver) → real Envoy →
portcullis → the real OpenID Provider's own login, consent and logout pages → the app page
(tests/e2e/echo.py under /app), which greets the user named by the identity headers.

Screenshots of the sign-in, error and signed-out pages (phone 390×844 and desktop 1280×800,
light and dark) go to target/screenshots/ (E2E_SCREENSHOTS_DIR); every page of ours also passes
the accessibility check of a11y.py in both colour schemes.
"""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

import a11y
from chrome import Chromium
from conftest import _new_stack_dir
from parts import Stack

DEEP = "/app/reports/2026?q=north%20east&sort=-date"

LOGO_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40" viewBox="0 0 40 40">'
    '<rect width="40" height="40" rx="10" fill="#0f766e"/>'
    '<path d="M11 27 20 11l9 16z" fill="#fff"/></svg>'
)
LOGO = "data:image/svg+xml;base64," + base64.b64encode(LOGO_SVG.encode()).decode()


@pytest.fixture(scope="module")
def app_stack(work_dir):
    """Default settings: login_mode = redirect."""
    s = Stack(_new_stack_dir(work_dir, "browser-redirect"))
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def admins_stack(work_dir):
    """login_mode = page, only group admins allowed (bob is in devs only), branded pages."""
    s = Stack(
        _new_stack_dir(work_dir, "browser-page"),
        authz_toml='allowed_groups = ["admins"]',
        portcullis_toml=(
            "[pages]\n"
            'login_mode = "page"\n'
            'title = "Example Corp"\n'
            'provider_name = "Example SSO"\n'
            f'logo = "{LOGO}"\n'
            'footer = "Example Corp IT · help desk ext. 4357"\n'
        ),
    )
    s.start()
    yield s
    s.stop()


@pytest.fixture
def browser(work_dir, request):
    b = Chromium(work_dir, name=request.node.name[:40])
    yield b
    b.quit()


def rd_of(href: str) -> str:
    return parse_qs(urlsplit(href).query)["rd"][0]


def assert_app_page(b: Chromium, stack: Stack, path: str, user: str) -> None:
    b.wait_for(f"the app page at {path}", lambda: b.has("#greeting"))
    assert b.url == stack.url + path, b.url
    assert b.find("#greeting").text == f"Hello, {user}"
    assert b.find("#path").text == path


def assert_our_page_is_sound(b: Chromium, page: str) -> None:
    """Styled (the CSP let our stylesheet in), no console errors (no CSP violations), and
    accessible in both colour schemes."""
    main_bg = b.driver.execute_script("return getComputedStyle(document.querySelector('main')).backgroundColor")
    assert main_bg == "rgb(255, 255, 255)", f"{page}: stylesheet not applied (CSP?): main background {main_bg}"
    button = b.find("a.button")
    assert button.value_of_css_property("background-color") == "rgba(30, 79, 214, 1)", page
    # Chromium reports a CSP violation as "Refused to load/apply/execute ...". (The log also
    # holds the 401/403 statuses of our pages and the IdP pages' blocked web fonts.)
    errors = b.console_errors()
    assert not [e for e in errors if "Refused" in e or "Content Security Policy" in e], f"{page}: {errors}"
    for scheme in ("light", "dark"):
        b.color_scheme(scheme)
        problems = a11y.check(b.driver)
        assert not problems, f"{page} ({scheme}): {problems}"
    b.color_scheme(None)


# -- redirect mode ---------------------------------------------------------------------------
def test_deep_link_login_silent_relogin_and_sign_out(app_stack, browser):
    b, s = browser, app_stack
    b.get(s.url + DEEP)
    assert b.url.startswith(s.idp.issuer), f"straight to the IdP in redirect mode: {b.url}"
    b.idp_login("alice")
    assert_app_page(b, s, DEEP, "alice")
    assert b.find("#groups").text == "admins,devs"

    # The session is gone (expired, or the cookie dropped): the next page load goes through the
    # IdP, whose session is alive, and comes back without any form.
    for c in b.driver.get_cookies():
        if c["name"].startswith("_portcullis"):
            b.driver.delete_cookie(c["name"])
    other = "/app/other?page=2"
    b.get(s.url + other)
    assert_app_page(b, s, other, "alice")

    # Sign out: the IdP confirms, then our signed-out page; signing in again asks for the login.
    b.find("#sign-out").click()
    b.idp_confirm_logout()
    b.wait_for("the signed-out page", lambda: b.has("main h1") and "signed out" in b.find("h1").text)
    assert b.url == s.url + "/oauth2/signed_out", b.url
    assert b.find("h1").text == "You're signed out"
    assert b.driver.title == "Signed out", "no pages.title configured"
    assert not b.has("header.brand"), "no brand header without title or logo"
    assert_our_page_is_sound(b, "signed-out (unbranded)")
    again = b.find("a.button")
    assert again.text == "Sign in again"
    b.get(s.url + "/app/")
    assert b.at_idp_login(), f"asked to log in again: {b.url}"


def test_two_tabs_log_in_at_once(app_stack, browser):
    b, s = browser, app_stack
    b.get(s.url + "/app/one?tab=1")
    first = b.driver.current_window_handle
    b.driver.switch_to.new_window("tab")
    second = b.driver.current_window_handle
    b.get(s.url + "/app/two?tab=2")
    assert b.at_idp_login()
    # Both tabs now sit on the IdP's login form with a login of their own pending.
    b.idp_login("alice")
    assert_app_page(b, s, "/app/two?tab=2", "alice")
    b.driver.switch_to.window(first)
    assert b.at_idp_login()
    b.idp_login("alice")
    assert_app_page(b, s, "/app/one?tab=1", "alice")
    b.driver.switch_to.window(second)
    b.driver.refresh()
    assert_app_page(b, s, "/app/two?tab=2", "alice")


def test_default_sign_in_page(app_stack, browser):
    b, s = browser, app_stack
    b.get(s.url + "/oauth2/sign_in?rd=/app/x%3Fy%3D1")
    assert b.find("h1").text == "Sign in to continue"
    assert b.driver.title == "Sign in"
    button = b.find("a.button")
    assert button.text == "Sign in with OpenID Connect"
    assert_our_page_is_sound(b, "sign-in (default)")
    b.screenshots("sign-in-default")
    button.click()
    b.idp_login("alice")
    assert_app_page(b, s, "/app/x?y=1", "alice")


# -- page mode, a group policy, branding -----------------------------------------------------
def test_sign_in_page_error_page_and_switching_account(admins_stack, browser):
    b, s = browser, admins_stack
    deep = "/app/admin?tab=users&q=a%2Fb"
    b.get(s.url + deep)
    assert b.url == s.url + deep, "page mode shows the sign-in page in place"
    assert b.find("h1").text == "Sign in to continue"
    assert b.driver.title == "Sign in · Example Corp"
    assert b.find("header.brand span").text == "Example Corp"
    assert b.find("a.button").text == "Sign in with Example SSO"
    assert rd_of(b.find("a.button").get_attribute("href")) == deep
    assert_our_page_is_sound(b, "sign-in")
    b.screenshots("sign-in")

    # Keyboard only, on a freshly loaded page: Tab to the button, Enter.
    b.driver.refresh()
    ActionChains(b.driver).send_keys(Keys.TAB).perform()
    focused = b.driver.switch_to.active_element
    assert focused.text == "Sign in with Example SSO", focused.get_attribute("outerHTML")
    focused.send_keys(Keys.ENTER)

    # bob is in devs only: the error page, with a way back to the same deep link.
    b.idp_login("bob")
    b.wait_for("the error page", lambda: b.has("p.status"))
    assert b.find("h1").text == "Access denied"
    assert "not in a group" in b.text()
    assert b.find("p.status").text == "Error 403"
    request_id = b.find("p.meta code").text
    assert len(request_id) >= 8, request_id
    try_again, switch = b.driver.find_elements("css selector", "a.button")
    assert try_again.text == "Try again" and rd_of(try_again.get_attribute("href")) == deep
    assert switch.text == "Use a different account"
    assert_our_page_is_sound(b, "error")
    b.screenshots("error")

    # A different account: the IdP asks for the login again (its session is bob's), then alice
    # lands exactly on the deep link.
    switch.click()
    b.idp_login("alice")
    assert_app_page(b, s, deep, "alice")

    # Sign out lands on the signed-out page.
    b.find("#sign-out").click()
    b.idp_confirm_logout()
    b.wait_for("the signed-out page", lambda: b.has("main h1") and "signed out" in b.find("h1").text)
    assert b.driver.title == "Signed out · Example Corp"
    assert_our_page_is_sound(b, "signed-out")
    b.screenshots("signed-out")
    b.find("a.button").click()
    assert b.at_idp_login(), f"asked to log in again: {b.url}"


def test_pages_carry_security_headers_through_envoy(admins_stack):
    r = requests.get(admins_stack.url + "/app/x", headers={"accept": "text/html"}, timeout=10)
    assert r.status_code == 401, "page mode: the sign-in page, never a 200"
    csp = r.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'", csp
    assert directives["style-src"].startswith("'sha256-"), csp
    assert directives["img-src"] == "data:", csp
    assert directives["frame-ancestors"] == "'none'", csp
    assert "script-src" not in directives and "unsafe" not in csp, csp
    assert "<script" not in r.text.lower() and " style=" not in r.text
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-store"
