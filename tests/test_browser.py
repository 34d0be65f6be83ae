"""What a person sees: executed notebooks opened in JupyterLab in headless Chromium show their plots and widgets.

Notebooks 01 (plotly figures, an ipywidgets slider) and 02 (circuitsvis attention views) are executed in fast mode,
signed as trusted (so their HTML runs, as after running them yourself), and opened in JupyterLab on a free loopback
port. The DOM is checked for each rendered element and a screenshot of it is saved in INTERP_SCREENSHOT_DIR (default:
the test's temporary folder). Needs Debian's `chromium` and `chromium-driver` and the `selenium` package: without
them the test is skipped, except under INTERP_BROWSER_TEST=1 (set by .ci/run), where it fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REQUIRED = os.environ.get("INTERP_BROWSER_TEST", "0") == "1"
CHECKS = {  # notebook -> {CSS selector of a rendered element: what it is}
    "01_superposition.ipynb": {
        ".js-plotly-plot .main-svg": "a plotly figure",
        ".widget-slider": "an ipywidgets slider",
    },
    # circuitsvis writes an empty div and a script; children appear only once its JavaScript has rendered
    "02_induction_heads.ipynb": {"[id^='circuits-vis']:has(h3)": "a circuitsvis attention view"},
}


def _browser() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        chromium = None
    if not (chromium and driver):
        message = "needs chromium, chromium-driver (apt-get install chromium chromium-driver) and selenium"
        if REQUIRED:
            pytest.fail(f"INTERP_BROWSER_TEST=1 but the browser test {message}.")
        pytest.skip(f"The browser test {message}.")
    return chromium, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab serving freshly executed copies of the checked notebooks; yields (url, token, folder)."""
    _browser()
    folder = tmp_path_factory.mktemp("lab")
    # Executed by the reproduce command in a process of its own, with a cell limit: in fresh-clone CI runs the kernel
    # used to go idle after notebook 01's widget cell with the client still waiting (widgets.interact printed a
    # plotly figure into its output area; the cell now hands the figure over as data). A stuck cell fails here.
    only = [name[:2] for name in CHECKS]
    command = [sys.executable, "-m", "interp_utils.course.reproduce", "--fast", "--model", "bundled", "--only", *only]
    # what is drawn is checked here, not the findings (the notebooks' own tests judge those): 01 and 02 train less
    env = {**os.environ, "INTERP_STEPS": "200", "INTERP_TRAIN_SCALE": "0.1"}
    done = subprocess.run(
        [*command, "--out", str(folder / "run"), "--timeout", "600"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, f"executing {', '.join(CHECKS)} failed:\n{done.stderr[-3000:]}"
    for name in CHECKS:
        shutil.copy(folder / "run" / "notebooks" / name, folder / name)
        subprocess.run([sys.executable, "-m", "jupyter", "trust", str(folder / name)], check=True, capture_output=True)
    port, token = _free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}"]
    command += [f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}", "--allow-root"]
    settings = folder / "settings" / "@jupyterlab"
    # the notebook laid out in full (no windowing), so elements scroll into view; no news pop-up over them
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    (settings / "apputils-extension").mkdir(parents=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    command += [f"--LabApp.workspaces_dir={folder / 'workspaces'}", f"--LabApp.user_settings_dir={folder / 'settings'}"]
    log = (folder / "lab.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(60):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail(f"JupyterLab did not answer on {url} within 60 s; see {folder / 'lab.log'}.")
        yield url, token, folder
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.mark.parametrize("name", list(CHECKS))
def test_notebook_renders_in_jupyterlab(lab, name):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    url, token, folder = lab
    chromium, driver_path = _browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    shots = Path(os.environ.get("INTERP_SCREENSHOT_DIR", folder))
    shots.mkdir(parents=True, exist_ok=True)
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        browser.get(f"{url}/lab/tree/{name}?reset&token={token}")  # ?reset: no restored workspace
        for selector, what in CHECKS[name].items():
            deadline = time.time() + 90
            while not (found := browser.find_elements(By.CSS_SELECTOR, selector)) and time.time() < deadline:
                time.sleep(1)
            shot = shots / f"{Path(name).stem}-{what.split()[-2]}.png"
            if not found:
                browser.save_screenshot(str(shot))
            assert found, f"{name}: no {what} ({selector!r}) rendered in JupyterLab within 90 s; screenshot {shot}"
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", found[0])
            time.sleep(1)
            found[0].screenshot(str(shot))  # just the element
            assert found[0].is_displayed() and found[0].size["height"] > 10, (
                f"{name}: {what} is not visible; see {shot}"
            )
    finally:
        browser.quit()
