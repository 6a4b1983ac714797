"""`Server`: a repository, its response cache and metrics, served by uvicorn.

`serve(...)` runs one in the foreground (`compile serve REPO`): SIGINT or SIGTERM stop new
connections, let requests in flight finish, drain every queue, then exit. `Server.start()`
runs one on a background thread and returns its URL (tests, notebooks, embedding).
A poller thread rescans the repository every `poll_interval_s` for new or changed versions.
"""
from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

from .cache import ResponseCache
from .repository import Repository

DEFAULT_CACHE_BYTES = 256 << 20
DEFAULT_MAX_REQUEST_BYTES = 256 << 20
SWITCH_INTERVAL_S = 0.0005


class Server:
    def __init__(self, repository: str | Path, *, host: str = "127.0.0.1", port: int = 8000,
                 metrics_port: int | None = None, poll_interval_s: float = 2.0, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, num_threads: int | None = None):
        from .app import ServingApp
        from .metrics import registry_for

        self.host, self.port, self.metrics_port = host, port, metrics_port
        self.poll_interval_s = poll_interval_s
        self.max_request_bytes = max_request_bytes
        self.repository = Repository(repository, num_threads=num_threads)
        self.cache = ResponseCache(cache_bytes)
        self.registry = registry_for(self.repository, self.cache)
        self.stopping = False  # requests are refused (after uvicorn closed the connections)
        self.draining = False  # stopping has begun: requests in flight are still answered
        self._stop_polling = threading.Event()
        self._poller = threading.Thread(target=self._poll, daemon=True, name="repository-poller")
        self.app = ServingApp(self).asgi
        self._uvicorn = None
        self._thread = None
        self._metrics_server = None

    def _poll(self) -> None:
        while not self._stop_polling.wait(self.poll_interval_s):
            try:
                self.repository.poll()
            except Exception:  # a repository that vanished or a race on a file: try again next time
                pass

    def _socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]  # port 0: the one the system chose
        sock.listen(2048)  # from here a client may connect: it waits in the backlog until uvicorn accepts
        return sock

    def _prepare(self, log_level: str):
        import uvicorn
        from prometheus_client import start_http_server

        server = self

        class Uvicorn(uvicorn.Server):
            async def shutdown(self, sockets=None):
                server.begin_stop()  # before uvicorn waits for open requests: they must not wait on a delay
                await super().shutdown(sockets)

        sock = self._socket()
        config = uvicorn.Config(self.app, log_level=log_level, access_log=False, lifespan="on",
                                timeout_graceful_shutdown=30)
        self._uvicorn = Uvicorn(config)
        if self.metrics_port is not None:
            self._metrics_server, _ = start_http_server(self.metrics_port, addr=self.host, registry=self.registry)
            self.metrics_port = self._metrics_server.server_port
        self.start_services()
        return sock

    def start_services(self) -> None:
        """What runs beside the HTTP server: the repository poller (an ASGI host other than
        uvicorn, such as Ray Serve, calls this and serves `app` itself)."""
        if not self._poller.is_alive():
            self._poller.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def run(self, log_level: str = "warning", announce=None) -> None:
        """Serve in the foreground until SIGINT/SIGTERM; `announce(url)` once listening."""
        # A batch worker coming back from native code waits for the GIL while the event loop
        # parses requests: Python's default 5 ms switch interval would stall every batch by
        # up to that much. The server process owns its interpreter, so it sets it lower.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        sock = self._prepare(log_level)
        if announce is not None:
            announce(self.url)
        self._uvicorn.run(sockets=[sock])

    def start(self, log_level: str = "warning", timeout_s: float = 30.0) -> str:
        """Serve on a background thread; returns the base URL once it accepts connections."""
        sock = self._prepare(log_level)
        self._thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name="compiler-serve")
        self._thread.start()
        ready = threading.Event()
        for _ in range(int(timeout_s * 100)):
            if self._uvicorn.started:
                ready.set()
                break
            ready.wait(0.01)
        if not ready.is_set():
            raise RuntimeError(f"the server did not start within {timeout_s} s")
        return self.url

    def stop(self, timeout_s: float = 30.0) -> None:
        """Graceful stop of a `start()`ed server: finish requests in flight, drain queues."""
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.shutdown()

    def begin_stop(self) -> None:
        """Stopping starts: not ready any more, queued requests run without waiting for fuller batches."""
        self.draining = True
        for v in self.repository.versions():
            v.batcher.hurry()

    def shutdown(self) -> None:
        """Uvicorn's lifespan shutdown (after connections closed): drain queues, stop polling."""
        if self.stopping:
            return
        self.stopping = True
        self._stop_polling.set()
        self.repository.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def serve(repository: str | Path, host: str = "127.0.0.1", port: int = 8000, metrics_port: int | None = 8002,
          **options) -> None:
    """Serve a model repository over the Open Inference Protocol until interrupted; see `Server`."""
    Server(repository, host=host, port=port, metrics_port=metrics_port, **options).run()
