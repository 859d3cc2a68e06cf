"""README images: the `sian serve` page after deraining the bundled example, and an explain figure.

    python tools/screenshots.py        # needs Debian's chromium; writes docs/images/serve.png, explain.png

Both use only the bundled Kodak example (src/sian/assets) and the shipped default model, so anyone can re-run it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from sian.serve import ServeConfig, create_app

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs/images"
RAINY = REPO / "src/sian/assets/kodim16_rainy.png"
CLEAN = REPO / "src/sian/assets/kodim16_clean.png"


def serve_screenshot() -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Debian's chromium: apt-get install chromium")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(ServeConfig()), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.getElementById('model').options.length > 0")
            page.set_input_files("#file", str(RAINY))
            page.click("#run")
            page.wait_for_selector("#results:not([hidden])", timeout=300_000)
            page.fill("#slider", "55")
            page.dispatch_event("#slider", "input")
            page.screenshot(path=str(IMAGES / "serve.png"), full_page=True)
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def explain_figure() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "sian", "explain", str(RAINY), "--gt", str(CLEAN), "-o", tmp,
                        "--max-side", "256"], check=True)  # fmt: skip
        shutil.copyfile(Path(tmp) / "kodim16_rainy_explain.png", IMAGES / "explain.png")


if __name__ == "__main__":
    IMAGES.mkdir(parents=True, exist_ok=True)
    serve_screenshot()
    explain_figure()
    print(f"wrote {IMAGES / 'serve.png'} and {IMAGES / 'explain.png'}")
