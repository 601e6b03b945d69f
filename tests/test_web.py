"""``harmony-tui --web``: the app in a real headless Chromium, and who may reach it."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import wait_until

from harmony_tui.web import app_argv, origin_allowed, web_problem

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")  # .ci/run installs them
ANSI = re.compile(r"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[PX^_][^\x1b]*"
                  r"\x1b\\|.)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_apps_command_leaves_out_the_web_servers_flags():
    argv = ["--web", "--port", "9000", "--host=127.0.0.1", "--model", "demo", "--insecure",
            "--port=1", "--python"]
    assert app_argv(argv) == ["--model", "demo", "--python"]


def test_other_hosts_are_refused_unless_insecure():
    assert web_problem("127.0.0.1", False) is None
    assert web_problem("localhost", False) is None
    assert "--insecure" in web_problem("0.0.0.0", False)
    assert web_problem("0.0.0.0", True) is None


def test_websockets_only_from_this_servers_pages():
    assert origin_allowed(None, "127.0.0.1:8000", 8000)  # a script, not a page
    assert origin_allowed("http://127.0.0.1:8000", "127.0.0.1:8000", 8000)
    assert origin_allowed("http://localhost:8000", "127.0.0.1:8000", 8000)
    assert not origin_allowed("https://evil.example", "127.0.0.1:8000", 8000)
    assert not origin_allowed("http://localhost:5173", "127.0.0.1:8000", 8000)


def test_web_on_another_host_is_one_line_and_exit_2():
    result = subprocess.run([sys.executable, "-m", "harmony_tui", "--web", "--host", "0.0.0.0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--insecure" in lines[0] and "Traceback" not in result.stderr


@pytest.fixture()
def web_server(tmp_path):
    port = free_port()
    log = (tmp_path / "web.log").open("w")  # a file: a full pipe would block the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "harmony_tui", "--web", "--port", str(port), "--model", "demo"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"},
        start_new_session=True)

    def listening() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return proc.poll() is not None

    try:
        wait_until(listening, timeout=60, interval=0.1, message="the web server")
        assert proc.poll() is None, (tmp_path / "web.log").read_text()
        yield port
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()


def test_foreign_host_header_gets_421(web_server):
    request = urllib.request.Request(f"http://127.0.0.1:{web_server}/",
                                     headers={"Host": f"rebound.example:{web_server}"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    assert err.value.code == 421
    with urllib.request.urlopen(f"http://127.0.0.1:{web_server}/", timeout=30) as page:
        assert page.status == 200 and b"textual" in page.read().lower()


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER) and not IN_CI,
                    reason="needs Debian's chromium and chromium-driver (installed by .ci/run)")
def test_a_prompt_typed_in_the_browser_gets_the_demo_answer(web_server, tmp_path):
    """Real headless Chromium: the page loads the app, and the prompt typed in it is answered.

    The terminal is drawn on a canvas, so the screen is read from the websocket frames the page
    receives (Chrome's performance log), with the terminal escapes removed."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    screen: list[str] = []

    def received() -> str:
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") != "Network.webSocketFrameReceived":
                continue
            frame = message["params"]["response"]
            data = frame["payloadData"]
            if frame.get("opcode") == 2:
                data = base64.b64decode(data).decode("utf-8", "replace")
            screen.append(data)
        return ANSI.sub("", "".join(screen))

    try:
        driver.set_page_load_timeout(60)
        driver.get(f"http://127.0.0.1:{web_server}/")
        wait_until(lambda: "demo is ready. Type a message" in received(), timeout=120,
                   interval=0.5, message="the app in the page, with the demo model loaded")
        box = driver.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")
        box.send_keys("Compare cats and dogs in a table.")
        box.send_keys("\n")
        wait_until(lambda: "Independence" in received() and "Daily walks" in received(),
                   timeout=120, interval=0.5, message="the demo's table in the page")
    finally:
        driver.quit()
