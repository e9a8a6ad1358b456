"""API memory under concurrent oversized uploads (issue 10): the body limit is enforced while
reading, so RSS stays bounded whatever the uploads' size, chunked or not, hottok or not.

Starts `engine serve --no-worker` (one uvicorn process) on PostgreSQL + Redis, measures its RSS
at rest, then sends N concurrent uploads of SIZE MB each (chunked, and with a declared
Content-Length; with and without a hottok) over raw sockets, sampling the server's RSS every
20 ms. Prints the baseline, the peak and the answers.

Usage: .venv/bin/python bench/webhook_memory.py [--uploads 20] [--size-mb 200]
Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (`bash .ci/services`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.stack import ENGINE, HOTTOK, REDIS_URL, bench_database, clear_queue, rss_mb, wait_healthy  # noqa: E402
from tests.fakes.server import free_port  # noqa: E402

CHUNK = b"a" * 65536


async def upload(port: int, size: int, *, chunked: bool, hottok: bool) -> str:
    """Send up to ``size`` bytes of body; the answer's status line (or how the server cut us)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = ["POST /webhooks/hotmart HTTP/1.1", "Host: bench", "Content-Type: application/json"]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
    if hottok:
        head.append(f"X-HOTMART-HOTTOK: {HOTTOK}")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    frame = b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK) if chunked else CHUNK
    sent = 0
    try:
        while sent < size:
            writer.write(frame)
            await writer.drain()
            sent += len(CHUNK)
            if reader.at_eof() or len(reader._buffer):  # noqa: SLF001 - the answer came early
                break
        if chunked and sent >= size:
            writer.write(b"0\r\n\r\n")
        status = (await asyncio.wait_for(reader.readline(), 30)).decode().strip()
    except (TimeoutError, ConnectionError) as exc:
        status = f"cut ({type(exc).__name__})"
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return f"{status} after {sent / 1e6:.1f} MB sent"


async def burst(port: int, uploads: int, size: int, chunked: bool, hottok: bool) -> list[str]:
    return await asyncio.gather(*(upload(port, size, chunked=chunked, hottok=hottok) for _ in range(uploads)))


def sample(pid: int, peaks: list[float], done: threading.Event) -> None:
    while not done.is_set():
        peaks.append(rss_mb(pid, children=True))
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=20, help="concurrent uploads per round")
    parser.add_argument("--size-mb", type=int, default=200, help="size of each upload")
    args = parser.parse_args()
    # A queue name of its own: the webhooks enqueue tasks nobody runs here; only its keys are deleted.
    queue = f"bench-memory-{uuid.uuid4().hex[:8]}"
    api = None
    try:
        with bench_database() as dsn, tempfile.TemporaryDirectory() as tmp:
            env = {
                **os.environ,
                "ENGINE_ENV": "production",
                "DATABASE_URL": dsn,
                "REDIS_URL": REDIS_URL,
                "QUEUE_NAME": queue,
                "RULES_DIR": str(REPO / "rules"),
                "HOTMART_HOTTOK": HOTTOK,
                "ADMIN_API_TOKEN": "bench-admin",
                "VAR_DIR": tmp,
            }
            port = free_port()
            api = subprocess.Popen(
                [ENGINE, "serve", "--no-worker", "--port", str(port)],
                env=env,
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_healthy(f"http://127.0.0.1:{port}")
            body = (REPO / "examples/hotmart/purchase_approved.json").read_bytes()
            for _ in range(50):  # warm up: the steady state of a serving process
                httpx.post(
                    f"http://127.0.0.1:{port}/webhooks/hotmart", content=body, headers={"X-HOTMART-HOTTOK": HOTTOK}
                )
            time.sleep(0.5)
            baseline = rss_mb(api.pid, children=True)
            size = args.size_mb * 1024 * 1024
            print(f"API RSS at rest (after 50 webhooks): {baseline:.0f} MB")
            print(f"{args.uploads} concurrent uploads of {args.size_mb} MB each, limit MAX_BODY_BYTES=256 KiB:")
            for chunked in (True, False):
                for hottok in (False, True):
                    peaks = [baseline]
                    done = threading.Event()
                    sampler = threading.Thread(target=sample, args=(api.pid, peaks, done))
                    sampler.start()
                    start = time.perf_counter()
                    answers = asyncio.run(burst(port, args.uploads, size, chunked, hottok))
                    elapsed = time.perf_counter() - start
                    done.set()
                    sampler.join()
                    peak = max(peaks)
                    kinds = sorted({a.split(" after ")[0] for a in answers})
                    label = f"{'chunked' if chunked else 'Content-Length'}, {'with' if hottok else 'no'} hottok"
                    print(
                        f"  {label:<30} peak RSS {peak:5.0f} MB (+{peak - baseline:4.0f} MB)  "
                        f"{elapsed:5.2f} s  answers: {', '.join(kinds)}"
                    )
            print(f"API RSS after the rounds: {rss_mb(api.pid, children=True):.0f} MB")
    finally:
        if api is not None:
            api.terminate()
            api.wait(10)
        clear_queue(queue)


if __name__ == "__main__":
    main()
