"""Headless Chromium for the browser test: Debian's `chromium` + `chromium-driver` driven by
Selenium. The test set-up installs them with apt-get when they are missing and we are root;
otherwise the browser tests are skipped with the reason."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                  "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars"]
PACKAGES = ["chromium", "chromium-driver"]


def find_chromium() -> tuple[str, str] | None:
    """(browser, chromedriver) paths, or None if either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
    if browser is None and Path("/usr/bin/chromium").exists():
        browser = "/usr/bin/chromium"
    return (browser, driver) if browser and driver else None


def install_chromium(timeout: float = 900) -> str | None:
    """apt-get install chromium chromium-driver; None on success, else why it could not."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "not root, so apt-get cannot install it"
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        try:
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"`{' '.join(cmd)}` failed: {e}"
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["?"]
            return f"`{' '.join(cmd)}` exited {r.returncode}: {tail[0]}"
    return None


def ensure_chromium() -> tuple[tuple[str, str] | None, str]:
    """(paths, reason): the browser and driver, installing them if needed; reason says why not."""
    found = find_chromium()
    if found:
        return found, ""
    why = install_chromium()
    found = find_chromium()
    if found:
        return found, ""
    return None, (f"headless Chromium is not installed (Debian packages {' '.join(PACKAGES)}) and could not be "
                  f"installed: {why or 'apt-get ran but no chromium/chromedriver appeared'}")


def make_driver(browser: str, driver: str, width: int = 1400, height: int = 1000):
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look anything up online
    os.environ.setdefault("SE_AVOID_STATS", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in [*CHROMIUM_FLAGS, f"--window-size={width},{height}"]:
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=opts)
