"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by Selenium.

Without the browser the UI tests are skipped with the install command, unless
``PEFT_SEARCH_REQUIRE_BROWSER=1`` (set by CI), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("PEFT_SEARCH_TEST_ARTIFACTS", ROOT / "test-artifacts"))
INSTALL = "apt-get install -y chromium chromium-driver && pip install -e '.[dev]'"


def _missing() -> str | None:
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        return f"headless Chromium not installed ({INSTALL})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return f"selenium not installed ({INSTALL})"
    return None


@contextmanager
def chromium(width: int = 1600, height: int = 1000):
    """A headless Chromium WebDriver, quit on exit."""
    missing = _missing()
    if missing:
        if os.environ.get("PEFT_SEARCH_REQUIRE_BROWSER") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}"):
        opts.add_argument(arg)
    opts.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def page_text(driver) -> str:
    return driver.find_element("tag name", "body").text


def wait_text(driver, *needles: str, timeout: float = 90) -> str:
    """Wait until the page shows every ``needles`` string; the page text."""
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d):
        text = page_text(d)
        return text if all(n in text for n in needles) else False

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(ready)
    except Exception as e:  # a timeout: say what was missing, keep the page for the reader
        shot = screenshot(driver, "timeout")
        text = page_text(driver)
        missing = [n for n in needles if n not in text]
        raise AssertionError(f"{driver.current_url}: {missing} not shown after {timeout:.0f}s "
                             f"(screenshot {shot}); page text: {text[:1500]}") from e


def wait_image(driver, size: list[int], what: str, timeout: float = 60) -> None:
    """Wait until the page shows a loaded image of ``size`` = [width, height] pixels."""
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(d):
        return size in d.execute_script(
            "return Array.from(document.images).filter(i => i.complete)"
            ".map(i => [i.naturalWidth, i.naturalHeight])")

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.5).until(shown)
    except Exception as e:
        shot = screenshot(driver, "timeout")
        raise AssertionError(f"{driver.current_url}: no {size[0]}x{size[1]} image ({what}) after "
                             f"{timeout:.0f}s (screenshot {shot})") from e


def screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
