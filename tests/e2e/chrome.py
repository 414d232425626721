"""Headless Chromium through WebDriver (Selenium), for the browser tests.

Debian's `chromium` and `chromium-driver` only (scripts/install-test-deps.sh installs them):
the driver path and the browser binary are given explicitly, so Selenium Manager never runs
and nothing is downloaded. Every browser gets a fresh profile directory (own cookie jar).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from harness import REPO_DIR

CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("E2E_CHROMEDRIVER", "/usr/bin/chromedriver")
SCREENSHOTS = Path(os.environ.get("E2E_SCREENSHOTS_DIR") or REPO_DIR / "target" / "screenshots")

PHONE = (390, 844, 2.0, True)
DESKTOP = (1280, 800, 1.0, False)

# Selenium must never phone home or fetch drivers.
os.environ.setdefault("SE_AVOID_STATS", "true")


class Chromium:
    """One headless Chromium with its own profile, stopped (and its profile removed) by quit()."""

    def __init__(self, log_dir: Path, name: str = "chromium"):
        self.profile = Path(tempfile.mkdtemp(prefix="e2e-chromium-"))
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in (
            "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--no-default-browser-check", "--disable-extensions",
            "--password-store=basic", f"--user-data-dir={self.profile}", "--window-size=1280,800",
            # Loopback only: no name resolves (the IdP's pages ask for web fonts from the net).
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ):
            opts.add_argument(flag)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(CHROMEDRIVER, log_output=str(Path(log_dir) / f"{name}-chromedriver.log"))
        self.driver = webdriver.Chrome(service=service, options=opts)
        self.driver.set_page_load_timeout(20)

    def quit(self) -> None:
        try:
            self.driver.quit()
        except WebDriverException:
            pass
        shutil.rmtree(self.profile, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------------
    def get(self, url: str) -> None:
        self.driver.get(url)

    @property
    def url(self) -> str:
        return self.driver.current_url

    def text(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "body").text

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def has(self, css: str) -> bool:
        return bool(self.driver.find_elements(By.CSS_SELECTOR, css))

    def wait_for(self, what: str, cond: Callable[[], bool], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if cond():
                    return
            except WebDriverException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; at {self.url}: {self.text()[:500]}")
            time.sleep(0.05)

    def console_errors(self) -> list[str]:
        return [e["message"] for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]

    def viewport(self, width: int, height: int, scale: float, mobile: bool) -> None:
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile},
        )

    def color_scheme(self, scheme: Optional[str]) -> None:
        # Reduced motion too: the pages then skip their colour transitions, so computed
        # styles (and screenshots) show the final colours at once.
        features = [
            {"name": "prefers-color-scheme", "value": scheme},
            {"name": "prefers-reduced-motion", "value": "reduce"},
        ] if scheme else []
        self.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": features})

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def screenshots(self, page: str) -> list[Path]:
        """The current page at phone and desktop size, light and dark; back to desktop light."""
        paths = []
        for size_name, size in (("phone", PHONE), ("desktop", DESKTOP)):
            self.viewport(*size)
            for scheme in ("light", "dark"):
                self.color_scheme(scheme)
                paths.append(self.screenshot(f"{page}-{size_name}-{scheme}"))
        self.color_scheme(None)
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        return paths

    # -- the OpenID Provider's own pages (oidc-provider devInteractions) -------------------------
    def at_idp_login(self) -> bool:
        return self.has("input[name=login]")

    def idp_login(self, user: str) -> None:
        """Fill in the IdP's login form, and its consent form if it shows one."""
        self.wait_for("the IdP login form", self.at_idp_login)
        self.find("input[name=login]").send_keys(user)
        self.find("input[name=password]").send_keys("any password")
        self.find("button[type=submit]").click()
        self.wait_for("leaving the IdP login form", lambda: not self.at_idp_login())
        if "/interaction/" in self.url and self.has("button[type=submit]"):
            # The consent form ("Authorize").
            self.find("button[type=submit]").click()
            self.wait_for("leaving the IdP consent form", lambda: "/interaction/" not in self.url)

    def idp_confirm_logout(self) -> None:
        self.wait_for("the IdP logout confirmation", lambda: self.has("button[name=logout]"))
        self.find("button[name=logout][value=yes]").click()
