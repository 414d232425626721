"""A scripted browser for the end-to-end tests: one cookie jar, redirects followed by hand (so a
test sees every hop), and the oidc-provider devInteractions forms (login, consent, logout)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from html.parser import HTMLParser
from typing import Optional
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
TIMEOUT = 10


class Form:
    def __init__(self, action: str, method: str, form_id: Optional[str]):
        self.action = action
        self.method = method
        self.id = form_id
        self.fields: dict[str, str] = {}

    def __repr__(self):
        return f"Form(id={self.id!r}, action={self.action!r}, fields={self.fields!r})"


class _FormParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms: list[Form] = []
        self._current: Optional[Form] = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self._current = Form(a.get("action") or "", (a.get("method") or "get").lower(), a.get("id"))
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and a.get("name"):
            self._current.fields[a["name"]] = a.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form":
            self._current = None


def parse_forms(html: str) -> list[Form]:
    p = _FormParser()
    p.feed(html)
    return p.forms


def query(url: str) -> dict[str, str]:
    """Query parameters of `url` (single-valued; a repeated parameter is an error)."""
    params = parse_qs(urlsplit(url).query, keep_blank_values=True)
    for k, v in params.items():
        assert len(v) == 1, f"parameter {k} repeated in {url}"
    return {k: v[0] for k, v in params.items()}


def without_query(url: str) -> str:
    s = urlsplit(url)
    return f"{s.scheme}://{s.netloc}{s.path}"


def pkce_pair() -> tuple[str, str]:
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def jwt_claims(token: str) -> dict:
    """The payload of a JWT, not verified (for assertions only)."""
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


class Browser:
    def __init__(self, accept: str = BROWSER_ACCEPT, user_agent: str = "portcullis-e2e-browser"):
        self.session = requests.Session()
        self.session.headers["Accept"] = accept
        self.session.headers["User-Agent"] = user_agent
        self.history: list[requests.Response] = []

    # -- requests --------------------------------------------------------------------------
    def request(self, method: str, url: str, **kw) -> requests.Response:
        kw.setdefault("allow_redirects", False)
        kw.setdefault("timeout", TIMEOUT)
        r = self.session.request(method, url, **kw)
        self.history.append(r)
        return r

    def get(self, url: str, **kw) -> requests.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw) -> requests.Response:
        return self.request("POST", url, **kw)

    def cookie_names(self) -> set[str]:
        return {c.name for c in self.session.cookies}

    def cookie(self, name: str) -> Optional[str]:
        for c in self.session.cookies:
            if c.name == name:
                return c.value
        return None

    def trace(self) -> str:
        """What this browser did, for assertion messages."""
        lines = []
        for r in self.history:
            loc = r.headers.get("location")
            lines.append(
                f"{r.request.method} {r.url} -> {r.status_code}"
                + (f" location={loc}" if loc else "")
                + (f" set-cookie={r.raw.headers.getlist('set-cookie')}" if "set-cookie" in r.headers else "")
            )
        return "\n".join(lines)

    # -- the OpenID Provider's pages -------------------------------------------------------
    def authorize_at_idp(self, auth_url: str, redirect_prefix: str, login: str = "alice",
                         max_hops: int = 20) -> str:
        """Walk from an authorization request to the redirect back to the relying party.

        Follows the IdP's redirects, fills the devInteractions login form (any password) and
        confirms the consent form. Returns the first Location that starts with
        `redirect_prefix` (the RP's callback, not requested)."""
        url = auth_url
        for _ in range(max_hops):
            if url.startswith(redirect_prefix):
                return url
            r = self.get(url)
            if r.status_code in (301, 302, 303, 307, 308):
                url = urljoin(r.url, r.headers["location"])
                continue
            assert r.status_code == 200, (
                f"IdP answered {r.status_code} at {r.url}: {r.text[:500]}\n{self.trace()}"
            )
            forms = [f for f in parse_forms(r.text) if f.method == "post"]
            form = next((f for f in forms if f.fields.get("prompt") in ("login", "consent")), None)
            assert form is not None, f"no login/consent form at {r.url}: {r.text[:1000]}"
            data = dict(form.fields)
            if data["prompt"] == "login":
                data.update(login=login, password="any-password")
            r = self.post(urljoin(r.url, form.action), data=data)
            assert r.status_code in (302, 303), (
                f"form post answered {r.status_code}: {r.text[:500]}\n{self.trace()}"
            )
            url = urljoin(r.url, r.headers["location"])
        raise AssertionError(f"no redirect to {redirect_prefix} after {max_hops} hops\n{self.trace()}")

    def confirm_idp_logout(self, end_session_url: str) -> requests.Response:
        """Open the IdP's end_session URL and answer "yes" on its logout confirmation page.

        Returns the IdP's response to the confirmation (a redirect to the
        post_logout_redirect_uri, or the IdP's own "signed out" page)."""
        r = self.get(end_session_url)
        assert r.status_code == 200, f"end_session answered {r.status_code}: {r.text[:500]}"
        forms = parse_forms(r.text)
        form = next((f for f in forms if "xsrf" in f.fields), None)
        assert form is not None, f"no logout form in: {r.text[:1000]}"
        data = dict(form.fields)
        data["logout"] = "yes"
        return self.post(urljoin(r.url, form.action), data=data)
