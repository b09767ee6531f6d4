"""Time and peak memory of `ferrotrace report`, `report --html` and `convert` on a large
trace, the HTML's size, and its time to first view in headless Chromium.

    python benches/report.py [--spans 1000000] [--trace existing.jsonl] [--keep]

Makes the trace with benches/trace_gen.py (synthetic, ferrotrace's schema, ~800 bytes a span
with previews) unless --trace is given; each command runs in its own process under
`/usr/bin/time -v` (wall time, maximum RSS). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measured(cmd: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in MiB) of `cmd` (on a busy machine the CPU time
    is the steadier figure)."""
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{cmd} failed: {proc.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", proc.stderr).group(1)
    parts = [float(p) for p in wall.split(":")]
    seconds = sum(p * 60**i for i, p in enumerate(reversed(parts)))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    cpu = sum(
        float(re.search(rf"{k} time \(seconds\): (\S+)", proc.stderr).group(1)) for k in ("User", "System")
    )
    return seconds, cpu, rss // 1024


def first_view_ms(page: Path) -> int:
    """Milliseconds from navigation start to the first painted view, in headless Chromium."""
    from selenium import webdriver

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
    profile = tempfile.mkdtemp(prefix="ferrotrace-bench-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver")
    )
    try:
        driver.set_page_load_timeout(120)
        driver.get(page.as_uri())
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            value = driver.execute_script("return document.body.getAttribute('data-first-view-ms')")
            if value:
                return int(value)
            time.sleep(0.05)
        raise RuntimeError("the page never finished its first view")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--spans", type=int, default=1_000_000)
    p.add_argument("--trace", help="an existing JSONL trace instead of a generated one")
    p.add_argument("--keep", action="store_true", help="keep the outputs in the temporary directory")
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ferrotrace-bench-report-"))
    trace = Path(a.trace) if a.trace else tmp / "trace.jsonl"
    if not a.trace:
        subprocess.run(
            [sys.executable, str(HERE / "trace_gen.py"), str(trace), "--spans", str(a.spans)], check=True
        )
    ft = [sys.executable, "-m", "ferrotrace"]
    print(f"trace: {trace} ({trace.stat().st_size / 2**20:.0f} MiB)\n")
    print("| command | wall s | CPU s | peak RSS MiB | output |\n|---|---:|---:|---:|---|", flush=True)
    for label, cmd, out in [
        ("report (text)", [*ft, "report", str(trace)], None),
        ("report --html", [*ft, "report", str(trace), "--html", str(tmp / "r.html")], tmp / "r.html"),
        (
            "convert --to chrome",
            [*ft, "convert", str(trace), "--to", "chrome", "-o", str(tmp / "c.json")],
            tmp / "c.json",
        ),
        (
            "convert --to speedscope",
            [*ft, "convert", str(trace), "--to", "speedscope", "-o", str(tmp / "s.json")],
            tmp / "s.json",
        ),
    ]:
        seconds, cpu, rss = measured(cmd)
        size = f"{out.stat().st_size / 2**20:.1f} MiB" if out else ""
        print(f"| {label} | {seconds:.1f} | {cpu:.1f} | {rss} | {size} |", flush=True)
        if out and out.suffix == ".json":
            out.unlink()
    view = first_view_ms(tmp / "r.html")
    print(f"\nHTML first view in headless Chromium: {view} ms (navigation start to first painted view)")
    if not a.keep:
        for f in tmp.iterdir():
            f.unlink()
        os.rmdir(tmp)


if __name__ == "__main__":
    main()
