"""Serving compiled models: a Triton-style model repository over the Open Inference Protocol
(KServe v2 REST, binary tensor data extension), with dynamic batching, a response cache and
Prometheus metrics under Triton's names.

    compile serve REPO --port 8000 --metrics-port 8002
    python -c "from compiler.serving import serve; serve('REPO')"

    REPO/<model>/config.json          optional: batching, queue, cache, versions (config.py)
    REPO/<model>/<version>/*.cmod     one artifact, or one per batch size:
                                      compile model.onnx --batch-sizes 1,4,16 -o REPO/<model>/1

Needs the `serve` extra (starlette, uvicorn, prometheus-client); `compiler.load` alone needs
none of it. Modules: protocol (request/response codec), repository (versions, artifacts by
batch size, polling), batcher (queue and merging), cache (responses), stats and metrics,
app (routes), server (uvicorn, start/stop).
"""
from __future__ import annotations

from ..ir.errors import CompilerError

_NEEDS = "serving needs the 'serve' extra: pip install \"compiler[serve]\" (starlette, uvicorn, prometheus-client)"


def _check_extra() -> None:
    import importlib.util

    missing = [m for m in ("starlette", "uvicorn", "prometheus_client") if importlib.util.find_spec(m) is None]
    if missing:
        raise CompilerError(f"{_NEEDS}; missing: {', '.join(missing)}")


def serve(repository, host: str = "127.0.0.1", port: int = 8000, metrics_port: int | None = 8002, **options) -> None:
    """Serve `repository` until SIGINT/SIGTERM; options as `compiler.serving.server.Server`."""
    _check_extra()
    from .server import serve as _serve

    _serve(repository, host=host, port=port, metrics_port=metrics_port, **options)


def Server(repository, **options):
    """A server object to `start()` on a background thread and `stop()`; see `server.Server`."""
    _check_extra()
    from .server import Server as _Server

    return _Server(repository, **options)


__all__ = ["serve", "Server"]
