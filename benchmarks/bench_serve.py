"""Round-trip time of the live page's POST /api/predict, drawing by drawing.

    python benchmarks/bench_serve.py                 # 100 drawings, the shipped model
    python benchmarks/bench_serve.py --n 300 --params runs/best/best_params.npz

Starts the server in this process on a free port, posts MNIST test digits drawn as the
page draws them (black ink on a white 280x280 canvas, as PNG data URLs), one request at a
time, and prints the median and 90th-percentile round trip (request sent to whole JSON
answer parsed) with the time spent in the model, the CPU model and the load average.
"""

import argparse
import base64
import http.client
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.serve.live import LivePage  # noqa: E402 (the project runs from its root)
from core.serve.server import LiveServer  # noqa: E402
from data import load_dataset  # noqa: E402


def cpu_model():
    """The CPU's name as ``lscpu`` gives it ("Model name"), or "unknown"."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    names = [line.split(":", 1)[1].strip() for line in text.splitlines() if "Model name" in line]
    return names[0] if names else "unknown"


def drawings(n):
    """``n`` request bodies: MNIST test digits drawn black on a white 280x280 canvas."""
    images = load_dataset("mnist").x_test[:n, 0]
    bodies = []
    for digit in images:
        buffer = io.BytesIO()
        canvas = Image.fromarray(255 - digit).resize((280, 280), Image.Resampling.BILINEAR)
        canvas.save(buffer, format="PNG")
        url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        bodies.append(json.dumps({"image": url}).encode("ascii"))
    return bodies


def round_trip(host, port, body):
    """(seconds for one POST /api/predict, the model's own ms)."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection(host, port, timeout=60)
    connection.request("POST", "/api/predict", body, {"Content-Type": "application/json"})
    answer = json.loads(connection.getresponse().read())
    connection.close()
    return time.perf_counter() - started, answer["ms"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="drawings to post (default 100)")
    parser.add_argument("--params", type=Path, default=ROOT / "best_params.npz")
    args = parser.parse_args()

    server = LiveServer(("127.0.0.1", 0), LivePage(args.params), log=None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    bodies = drawings(args.n)
    round_trip(host, port, bodies[0])  # warm-up: first-call allocations, the worker pool
    times, model_ms = zip(*(round_trip(host, port, body) for body in bodies), strict=True)
    server.shutdown()
    server.server_close()

    ms = 1000 * np.array(times)
    print(f"POST /api/predict, {args.n} drawings one at a time, {args.params.name}:")
    print(
        f"round trip: median {np.median(ms):.1f} ms, p90 {np.percentile(ms, 90):.1f} ms "
        f"(in the model: median {np.median(model_ms):.1f} ms); "
        f"body {np.mean([len(b) for b in bodies]) / 1024:.1f} kB"
    )
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
