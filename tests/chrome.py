"""Headless Chromium for the tests of the HTML pages (shared by the report and tree tests)."""

from __future__ import annotations

import os

import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
HAVE_CHROME = os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)
NO_CHROME = (
    f"needs {CHROMIUM} and {CHROMEDRIVER} (Debian: apt-get install chromium chromium-driver; "
    "`make test` installs them)"
)
needs_chrome = pytest.mark.skipif(not HAVE_CHROME, reason=NO_CHROME)

_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)


def chrome(profile_dir):
    """A headless Chromium driver (its profile in ``profile_dir``) keeping the console log."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (*_ARGS, f"--user-data-dir={profile_dir}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
