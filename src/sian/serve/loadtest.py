"""A bounded load test of ``sian serve``: many concurrent clients mixing good and bad uploads.

    python -m sian.serve.loadtest [--clients 32] [--rounds 3] [--markdown FILE]

starts ``sian serve`` on 127.0.0.1 (a free port) with a small SIAN, sends ``clients`` concurrent clients
``rounds`` requests each, in a fixed mix: valid PNGs of several sizes, oversized uploads, garbage bytes,
truncated PNGs and slow senders (a body trickled in chunks), while another client polls
``/v1/health``. Traffic goes to this machine's loopback only, and every loop is bounded in count and time.

It checks that every answer is 200, a 4xx or 503 (never a 500, never a dropped
connection), every 200 is a PNG of the input's size, health answers during and after, and the server's
peak RSS (``VmHWM``) stays under the bound of ``docs/reliability.md`` for its settings. Prints (and with
``--markdown`` writes) throughput, p50/p95 latency, peak RSS and the count of each status.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from ..inference import BYTES_PER_PIXEL, DEFAULT_MEMORY_BUDGET

__all__ = ["LoadResult", "memory_bound", "run_load_test", "wait_for_health"]

KINDS = ("valid", "valid", "oversized", "garbage", "truncated", "slow")  # the mix, one per request in turn


@dataclass
class LoadResult:
    statuses: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)  # 500s, dropped connections, wrong images
    latencies: list[float] = field(default_factory=list)  # seconds of every answered request
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    bound_mb: float = 0.0
    base_rss_mb: float = 0.0
    health_during: int = 0
    health_after: bool = False

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


def memory_bound(base_mb: float, slots: int, queue: int, upload_mb: float, max_pixels: int) -> float:
    """The peak-RSS bound of docs/reliability.md, in MB: base + slots x per-request + queue x 2 x upload."""
    inference = BYTES_PER_PIXEL[4] * max_pixels  # float32 maps, the largest of any precision
    tiled = inference > DEFAULT_MEMORY_BUDGET
    blend = 32 if tiled else 0  # a tiled image's float64 blend (3 channels) and its weights, beside the tile's maps
    per_pixel = 6 + 2 * 12 + blend  # decoded picture (16-bit), float32 input and output
    per_request = 2 * upload_mb + per_pixel * max_pixels / 1e6 + min(inference, DEFAULT_MEMORY_BUDGET) / 1e6
    return base_mb + slots * per_request + queue * 2 * upload_mb


def _png(height: int, width: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def wait_for_health(url: str, server: subprocess.Popen, seconds: float = 60) -> None:
    """Block until ``url``'s ``/v1/health`` answers 200 (a server process starting up), or raise."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    output = server.stderr.read() if server.poll() is not None and server.stderr else ""
    raise RuntimeError(f"the server at {url} did not start: {output}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int, field_name: str) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _one_request(url: str, kind: str, seed: int, upload_limit: int) -> tuple[int | None, float, str | None]:
    """``(status, seconds, problem)`` of one request of ``kind``; status None when the connection failed."""
    import httpx

    sizes = [(48, 64), (96, 128), (200, 300)]
    height, width = sizes[seed % len(sizes)]
    body = _png(height, width, seed)
    if kind == "oversized":
        body = body + bytes(upload_limit + 1)  # a PNG followed by junk: more bytes than allowed
    elif kind == "garbage":
        body = np.random.default_rng(seed).integers(0, 256, 5000, np.uint8).tobytes()
    elif kind == "truncated":
        body = body[: len(body) // 2]
    start = time.perf_counter()
    try:
        with httpx.Client(timeout=120) as client:
            if kind == "slow":
                import uuid

                boundary = uuid.uuid4().hex
                head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"s.png\"\r\n"
                        "Content-Type: image/png\r\n\r\n")  # fmt: skip
                payload = head.encode() + body + f"\r\n--{boundary}--\r\n".encode()

                def trickle():
                    for i in range(0, len(payload), max(1, len(payload) // 8)):
                        time.sleep(0.05)
                        yield payload[i : i + max(1, len(payload) // 8)]

                kind_header = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
                response = client.post(f"{url}/v1/derain", content=trickle(), headers=kind_header)
            else:
                response = client.post(f"{url}/v1/derain", files={"image": (f"{kind}.png", body, "image/png")})
    except httpx.TransportError as exc:
        return None, time.perf_counter() - start, f"{kind}: connection failed ({exc.__class__.__name__}: {exc})"
    seconds = time.perf_counter() - start
    problem = None
    if response.status_code == 200:
        try:
            size = Image.open(io.BytesIO(response.content)).size
            if kind not in ("valid", "slow") or size != (width, height):
                problem = f"{kind}: 200 with a {size} image for a {width}x{height} upload"
        except Exception as exc:  # any undecodable answer is a problem to report, whatever its type
            problem = f"{kind}: 200 but not an image ({exc})"
    elif response.status_code >= 500 and response.status_code != 503:
        problem = f"{kind}: {response.status_code} {response.text[:200]}"
    return response.status_code, seconds, problem


def run_load_test(clients: int = 32, rounds: int = 3, slots: int = 1, queue: int = 4, upload_mb: float = 1.0,
                  max_pixels: int = 1_000_000, time_limit: float = 300.0) -> LoadResult:  # fmt: skip
    """Start a server, run the mix, stop the server (SIGTERM), and return what happened."""
    import httpx

    import sian
    from sian.weights import save_weights

    result = LoadResult()
    with tempfile.TemporaryDirectory() as tmp:
        model = sian.create_model("sian", channels=8, stages=3)
        weights = str(save_weights(Path(tmp) / "load.safetensors", model, "sian", model.config))
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "sian", "--quiet", "serve", "--port", str(port), "--model", weights,
                   "--default-model", weights, "--slots", str(slots), "--queue", str(queue), "--queue-timeout", "60",
                   "--max-upload-mb", str(upload_mb), "--max-pixels", str(max_pixels)]  # fmt: skip
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_for_health(url, server)
            warm = _one_request(url, "valid", 0, int(upload_mb * 1024**2))  # load the model once
            if warm[0] != 200:
                raise RuntimeError(f"the server failed a valid request: {warm}")
            result.base_rss_mb = _rss_mb(server.pid, "VmRSS")
            stop_health = threading.Event()

            def poll_health() -> None:
                while not stop_health.is_set():
                    try:
                        if httpx.get(f"{url}/v1/health", timeout=10).status_code == 200:
                            result.health_during += 1
                    except httpx.TransportError as exc:
                        result.problems.append(f"health during the load failed: {exc}")
                    stop_health.wait(0.5)

            health = threading.Thread(target=poll_health, daemon=True)
            health.start()
            jobs = [(KINDS[(c + r) % len(KINDS)], c * 100 + r) for c in range(clients) for r in range(rounds)]
            start = time.perf_counter()

            def client(index: int) -> list:
                return [_one_request(url, kind, seed, int(upload_mb * 1024**2))
                        for kind, seed in jobs[index * rounds : (index + 1) * rounds]
                        if time.perf_counter() - start < time_limit]  # fmt: skip

            with concurrent.futures.ThreadPoolExecutor(clients) as pool:
                for answers in pool.map(client, range(clients)):
                    for status, seconds, problem in answers:
                        result.statuses[status if status is not None else "dropped"] += 1
                        if status is not None:
                            result.latencies.append(seconds)
                        if problem:
                            result.problems.append(problem)
            result.seconds = time.perf_counter() - start
            stop_health.set()
            health.join(timeout=15)
            result.health_after = httpx.get(f"{url}/v1/health", timeout=10).status_code == 200
            result.peak_rss_mb = _rss_mb(server.pid, "VmHWM")
            result.bound_mb = memory_bound(result.base_rss_mb, slots, queue, upload_mb, max_pixels)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
    return result


def to_markdown(result: LoadResult, clients: int, rounds: int) -> str:
    p50, p95 = (statistics.quantiles(result.latencies, n=20)[i] for i in (9, 18)) if len(result.latencies) > 1 else (
        float("nan"), float("nan"))  # fmt: skip
    statuses = ", ".join(f"{status}: {count}" for status, count in sorted(result.statuses.items(), key=str))
    return "\n".join([
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.processor() or platform.machine()} "
        f"({os.cpu_count()} CPUs) with `python -m sian.serve.loadtest --clients {clients} --rounds {rounds}`:",
        "",
        "| requests | seconds | requests/s | p50 (s) | p95 (s) | peak RSS (MB) | bound (MB) | statuses |",
        "|---|---|---|---|---|---|---|---|",
        f"| {result.requests} | {result.seconds:.1f} | {result.requests / result.seconds:.2f} | {p50:.2f} | "
        f"{p95:.2f} | {result.peak_rss_mb:.0f} | {result.bound_mb:.0f} | {statuses} |",
        "",
        f"Health answered {result.health_during} times during the load and {'also' if result.health_after else 'NOT'} "
        f"after it; problems: {len(result.problems)}.",
        "",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    result = run_load_test(args.clients, args.rounds)
    table = to_markdown(result, args.clients, args.rounds)
    print(table)
    for problem in result.problems:
        print("problem:", problem)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table)
    ok = not result.problems and result.health_after and result.peak_rss_mb <= result.bound_mb
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
