"""`ferrotrace report --html` and `run --html`, opened in real headless Chromium (Debian's
`chromium` and `chromium-driver`; `.ci/run` installs them): the page renders without a
console error, the flame graph names the program's functions, search finds one, a click
zooms, the timeline has one track per thread and shows a call's details, and a trace that
lost spans shows the banner. Without Chromium these tests fail: they never skip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import read_trace, spans
from selenium import webdriver
from selenium.common.exceptions import SessionNotCreatedException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

PROGRAM = """
import threading

def leaf(x):
    return x * 2

def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

def fails(reason):
    raise ValueError(reason)

def worker(n):
    for i in range(n):
        leaf(i)
    return fib(12)

def in_thread(n):
    return worker(n)

def main():
    t = threading.Thread(target=in_thread, args=(50,), name="w1")
    t.start()
    worker(20)
    t.join()
    try:
        fails("boom")
    except ValueError:
        pass

main()
"""

DROPS = """
import ferrotrace
ferrotrace.configure(output="drops.jsonl", batch_size=10, max_queue=20, debug_export_delay_ms=20)
def f(i):
    return i
with ferrotrace.session("burst"):
    for i in range(3000):
        f(i)
ferrotrace.shutdown()
"""


def _env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if not k.startswith("FERROTRACE_") or k == "FERROTRACE_BACKEND"
    }


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # On a loaded machine Chromium can miss chromedriver's start-up deadline
    # ("DevToolsActivePort file doesn't exist"): up to three attempts, then the error fails.
    for attempt in range(3):
        try:
            driver = webdriver.Chrome(
                options=options, service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver")
            )
            break
        except SessionNotCreatedException:
            if attempt == 2:
                raise
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def run_report(tmp_path_factory) -> Path:
    """`ferrotrace run --html` of PROGRAM: the report and the trace beside it."""
    tmp = tmp_path_factory.mktemp("report")
    (tmp / "prog.py").write_text(PROGRAM)
    proc = subprocess.run(
        [sys.executable, "-m", "ferrotrace", "run", "--html", "report.html", "prog.py"],
        cwd=tmp,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    return tmp


def _open(browser, page: Path) -> None:
    browser.get(page.as_uri())
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1"


def _errors(browser) -> list[dict]:
    return [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def _frames(browser) -> dict[str, object]:
    return {f.text: f for f in browser.find_elements(By.CSS_SELECTOR, "#flame .frame") if f.text}


def test_page_renders_flame_graph_without_console_error(browser, run_report):
    page = run_report / "report.html"
    html = page.read_text()
    assert (
        "<script src" not in html and "<link" not in html and "http://" not in html and "https://" not in html
    )
    _open(browser, page)
    assert _errors(browser) == []
    names = set(_frames(browser))
    assert {"all", "prog.py", "__main__.main", "__main__.worker", "__main__.fib"} <= names, names
    assert browser.find_element(By.ID, "drops-banner").is_displayed() is False
    top = browser.find_element(By.CSS_SELECTOR, "#top tbody").text
    assert "__main__.main" in top and "__main__.fib" in top


def test_search_highlights_matching_functions(browser, run_report):
    _open(browser, run_report / "report.html")
    box = browser.find_element(By.ID, "search")
    box.send_keys("fib")
    matches = browser.find_elements(By.CSS_SELECTOR, "#flame .frame.match")
    assert matches and {m.text for m in matches} == {"__main__.fib"}
    assert browser.find_element(By.ID, "search-result").text.startswith("1 function(s) match")
    assert _errors(browser) == []


def test_clicking_a_frame_zooms_to_it(browser, run_report):
    _open(browser, run_report / "report.html")
    flame_width = browser.find_element(By.ID, "flame").size["width"]

    def workers():
        return [
            f for f in browser.find_elements(By.CSS_SELECTOR, "#flame .frame") if f.text == "__main__.worker"
        ]

    # One `worker` under `main`, one under `main` -> `in_thread` (thread w1 follows the
    # session: its first call is a child of the call that started it).
    assert len(workers()) == 2
    narrow = min(workers(), key=lambda f: f.size["width"])
    assert narrow.size["width"] < flame_width - 10
    narrow.click()
    (zoomed,) = workers()
    assert abs(zoomed.size["width"] - flame_width) <= 2
    assert "__main__.leaf" in _frames(browser) and "__main__.fib" in _frames(browser)
    browser.find_element(By.ID, "flame-reset").click()
    assert len(workers()) == 2


def test_timeline_has_one_track_per_thread_and_shows_a_calls_details(browser, run_report):
    records = read_trace(run_report / "ferrotrace.jsonl")
    threads = {(s["pid"], s["thread_id"]) for s in spans(records)}
    assert len(threads) == 2
    _open(browser, run_report / "report.html")
    tracks = browser.find_elements(By.CSS_SELECTOR, "#timeline .track")
    assert len(tracks) == len(threads)
    labels = {t.find_element(By.CLASS_NAME, "track-label").text.split(" — ")[0] for t in tracks}
    assert labels == {f"pid {pid} · thread {tid}" for pid, tid in threads}
    # Zoom onto the call of `fails` and click it: its name, duration, args and exception show.
    where = browser.execute_script(
        """
        const i = names.indexOf("__main__.fails");
        const s = D.spans.find((s) => s[4] === i);
        view = [s[1] - s[2], s[1] + 2 * s[2]];
        drawTimeline();
        const c = tracks[s[0]].canvas;
        c.scrollIntoView({ block: "center" });
        return [s[0], c.clientWidth / 2, s[3] * TL_ROW + TL_ROW / 2, c.clientWidth, c.clientHeight];
        """
    )
    track, x, y, width, height = where
    canvas = tracks[track].find_element(By.TAG_NAME, "canvas")
    ActionChains(browser).move_to_element_with_offset(
        canvas, int(x - width / 2), int(y - height / 2)
    ).click().perform()
    detail = browser.find_element(By.ID, "span-detail").text
    assert detail.startswith("__main__.fails  duration "), detail
    (fails,) = [s for s in spans(records) if s["qualname"] == "fails"]
    assert "args: " in detail and "boom" in detail
    assert f"exception: {json.dumps(fails['exception'], ensure_ascii=False)}" in detail
    assert _errors(browser) == []


def test_session_list_picks_a_session(browser, run_report):
    _open(browser, run_report / "report.html")
    rows = browser.find_elements(By.CSS_SELECTOR, "#sessions tbody tr")
    assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == ["prog.py"]
    rows[0].click()
    assert "picked" in rows[0].get_attribute("class")
    assert browser.find_element(By.CSS_SELECTOR, "#flame .frame:not(.ancestor)").text == "prog.py"


def test_trace_with_drops_shows_the_banner(browser, tmp_path):
    (tmp_path / "drops.py").write_text(DROPS)
    proc = subprocess.run(
        [sys.executable, "drops.py"], cwd=tmp_path, env=_env(), capture_output=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    meta = read_trace(tmp_path / "drops.jsonl")[-1]
    assert meta["type"] == "meta" and meta["dropped"] > 0
    out = subprocess.run(
        [sys.executable, "-m", "ferrotrace", "report", "drops.jsonl", "--html", "drops.html"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    _open(browser, tmp_path / "drops.html")
    banner = browser.find_element(By.ID, "drops-banner")
    assert banner.is_displayed()
    assert f"dropped {meta['dropped']:,} of {meta['recorded']:,}" in banner.text
    assert _errors(browser) == []


def test_report_html_reads_several_files_as_one_run(tmp_path, run_report):
    trace = run_report / "ferrotrace.jsonl"
    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / name).write_bytes(trace.read_bytes())
    out = subprocess.run(
        [sys.executable, "-m", "ferrotrace", "report", str(tmp_path), "--html", str(tmp_path / "r.html")],
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    html = (tmp_path / "r.html").read_text()
    data = json.loads(
        html.split('<script id="ferrotrace-data" type="application/json">')[1].split("</script>")[0]
    )
    assert data["spans_total"] == 2 * len(spans(read_trace(trace)))
