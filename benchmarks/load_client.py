"""The load generator's client: HTTP/1.1 keep-alive connections driven by one asyncio event
loop (uvloop when installed) on one thread, sending a request built once.

The server under test shares this machine's cores with its clients, so what the clients
spend is taken from the server: Triton's perf_analyzer is native code for that reason. One
thread writing prebuilt bytes and reading each response's headers and body (no
client-side JSON or tensor decoding) keeps that cost small; `serving_load` reports the
cores the client used at each level.

    run_closed(...)    `concurrency` connections back to back until `stop` is set
    run_poisson(...)   arrivals at given times, each on a free connection from a pool
"""
from __future__ import annotations

import asyncio
import re
import threading
import time

_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")


def build_request(host: str, path: str, body: bytes, headers: dict) -> bytes:
    """One POST as bytes: request line, headers, body."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str) -> "_Connection":
        name, port = host.rsplit(":", 1)
        return cls(*await asyncio.open_connection(name, int(port)))

    async def send(self, request: bytes) -> None:
        """Send `request` and read the whole response; a status other than 200 raises."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = _LENGTH.search(head)
        body = await self.reader.readexactly(int(length.group(1))) if length else b""
        if head[9:12] != b"200":
            raise RuntimeError(f"HTTP {head[9:12].decode()}: {body[:300]!r}")

    def close(self) -> None:
        self.writer.close()


def _run(main) -> threading.Thread:
    """`main()` (a coroutine function) on its own event loop in a daemon thread."""
    def target():
        loop = _new_loop()
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def run_closed(host: str, request: bytes, concurrency: int, done: list, lock: threading.Lock,
               stop: threading.Event, errors: list) -> threading.Thread:
    """Closed loop: each of `concurrency` connections sends its next request when the last
    one is answered; appends (finish time, latency seconds) to `done` until `stop`."""
    async def worker():
        conn = await _Connection.open(host)
        try:
            while not stop.is_set():
                t = time.perf_counter()
                await conn.send(request)
                end = time.perf_counter()
                with lock:
                    done.append((end, end - t))
        finally:
            conn.close()

    async def main():
        results = await asyncio.gather(*(worker() for _ in range(concurrency)), return_exceptions=True)
        errors.extend(r for r in results if isinstance(r, BaseException))
        if errors:
            stop.set()

    return _run(main)


def run_poisson(host: str, request: bytes, arrivals, start: float, latencies: list, errors: list,
                connections: int = 32) -> threading.Thread:
    """Open loop: request i is due at `start + arrivals[i]` (perf_counter seconds) and goes
    out on the first free connection; its latency counts from when it was due, so a client
    that falls behind shows as latency, not as a lower rate."""
    async def main():
        pool: asyncio.Queue = asyncio.Queue()
        for _ in range(connections):
            pool.put_nowait(await _Connection.open(host))

        async def one(due: float):
            conn = await pool.get()
            try:
                await conn.send(request)
                latencies.append(time.perf_counter() - due)
            except Exception as e:  # noqa: BLE001 - reported by the caller
                errors.append(e)
            finally:
                pool.put_nowait(conn)

        tasks = []
        for a in arrivals:
            due = start + float(a)
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.ensure_future(one(due)))
        await asyncio.gather(*tasks)
        while not pool.empty():
            pool.get_nowait().close()

    return _run(main)
