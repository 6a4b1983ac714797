"""The ASGI application: the Open Inference Protocol's REST endpoints (KServe v2) with
Triton's extensions (binary tensor data, model configuration, statistics, repository
index), and `/metrics`.

    GET  /v2/health/live | /v2/health/ready            server health
    GET  /v2                                           server metadata
    GET  /v2/models/M[/versions/V]                     model metadata
    GET  /v2/models/M[/versions/V]/ready               model readiness
    GET  /v2/models/M[/versions/V]/config              model configuration (Triton's, as JSON)
    GET  /v2/models[/M[/versions/V]]/stats             statistics (Triton's statistics extension)
    POST /v2/models/M[/versions/V]/infer               inference
    POST /v2/repository/index                          every model version and its state
    GET  /metrics                                      Prometheus, Triton's metric names

Every refusal is `{"error": message}` with the protocol's status; an unexpected failure is
a 500 with its message, and the server keeps serving.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import zlib

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import __version__
from .batcher import VersionRetired
from .errors import ServingError
from .protocol import HEADER_LENGTH, encode_infer_response, parse_infer_request

EXTENSIONS = ["binary_tensor_data", "model_configuration", "statistics", "model_repository", "schedule_policy"]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _guarded(handler):
    """A handler whose refusals and failures become protocol errors, never a dropped server."""
    @functools.wraps(handler)
    async def wrapped(request: Request):
        try:
            return await handler(request)
        except ServingError as e:
            return _error(e.status, str(e))
        except Exception as e:  # the server outlives any one request
            return _error(500, f"internal error: {type(e).__name__}: {e}")
    return wrapped


def _reason(status: int) -> str:
    """Triton's failure reasons for `nv_inference_request_failure`."""
    return "REJECTED" if status in (503, 504) else "BACKEND" if status == 500 else "OTHER"


class ServingApp:
    """The routes over one `Server` (repository, cache, limits)."""

    def __init__(self, server):
        self.server = server
        self.repository = server.repository
        m, mv = "/v2/models/{model}", "/v2/models/{model}/versions/{version}"
        routes = [
            Route("/v2/health/live", self.live), Route("/v2/health/ready", self.ready), Route("/v2", self.metadata),
            Route("/v2/models/stats", self.stats), Route("/v2/repository/index", self.index, methods=["POST"]),
            Route("/metrics", self.metrics),
        ]
        for prefix in (mv, m):
            routes += [Route(prefix, self.model_metadata), Route(prefix + "/ready", self.model_ready),
                       Route(prefix + "/config", self.model_config), Route(prefix + "/stats", self.stats),
                       Route(prefix + "/infer", self.infer, methods=["POST"])]
        self.asgi = Starlette(routes=[Route(r.path, _guarded(r.endpoint), methods=r.methods) for r in routes],
                              lifespan=self._lifespan, exception_handlers={404: self._no_route, 405: self._no_route})

    @contextlib.asynccontextmanager
    async def _lifespan(self, app):
        yield
        self.server.shutdown()  # after uvicorn closed the connections: drain the queues

    async def _no_route(self, request: Request, exc):
        """An unknown path or method, answered in the protocol's form."""
        if exc.status_code == 405:
            return _error(405, f"{request.method} is not allowed on {request.url.path}")
        return _error(404, f"no endpoint {request.url.path}; this server speaks the Open Inference Protocol (/v2/...)")

    def _version(self, request: Request):
        p = request.path_params
        return self.repository.resolve(p["model"], p.get("version"))

    async def live(self, request: Request):
        return JSONResponse({"live": True})

    async def ready(self, request: Request):
        ready = not self.server.draining and any(True for _ in self.repository.versions())
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def metadata(self, request: Request):
        return JSONResponse({"name": "compiler", "version": __version__, "extensions": EXTENSIONS})

    async def model_metadata(self, request: Request):
        v = self._version(request)
        entry = self.repository.models[v.name]
        meta = v.metadata()
        meta["versions"] = [str(x) for x in sorted(entry.versions)]
        return JSONResponse(meta)

    async def model_ready(self, request: Request):
        try:
            v = self._version(request)
        except ServingError as e:
            if e.status == 404:
                raise
            return JSONResponse({"name": request.path_params["model"], "ready": False, "reason": str(e)}, status_code=503)
        return JSONResponse({"name": v.name, "version": str(v.version), "ready": v.batcher.accepting})

    async def model_config(self, request: Request):
        return JSONResponse(self._version(request).model_config())

    async def stats(self, request: Request):
        if "model" in request.path_params:
            if request.path_params.get("version"):
                chosen = [self._version(request)]
            else:
                self._version(request)  # 404 for an unknown model
                chosen = list(self.repository.models[request.path_params["model"]].versions.values())
        else:
            chosen = list(self.repository.versions())
        return JSONResponse({"model_stats": [v.stats.to_json(v.name, str(v.version)) for v in chosen]})

    async def index(self, request: Request):
        return JSONResponse(self.repository.index())

    async def metrics(self, request: Request):
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(self.server.registry), media_type=CONTENT_TYPE_LATEST)

    async def infer(self, request: Request):
        start = time.perf_counter_ns()
        version = self._version(request)
        try:
            return await self._infer(request, version, start)
        except ServingError as e:
            version.stats.fail(_reason(e.status), time.perf_counter_ns() - start)
            raise

    async def _infer(self, request: Request, version, start: int):
        if self.server.stopping:
            raise ServingError(503, "the server is shutting down")
        body = await self._body(request)
        parsed = parse_infer_request(body, request.headers.get(HEADER_LENGTH))
        pending = version.check_request(parsed)
        cache = self.server.cache if version.config.response_cache else None
        outputs = None
        if cache is not None:
            key = cache.key(version.name, version.version, parsed.inputs)
            outputs = cache.get(key, parsed.inputs)
            version.stats.add("cache_hit" if outputs is not None else "cache_miss", time.perf_counter_ns() - start)
        if outputs is None:
            version.stats.pending_delta(1)
            try:
                outputs = await self._queue(request, version, pending)
            finally:
                version.stats.pending_delta(-1)
            if cache is not None:
                cache.put(key, parsed.inputs, outputs)
        body, header_length = encode_infer_response(version.name, str(version.version), parsed, outputs,
                                                    [s.name for s in version.outputs])
        version.stats.add("success", time.perf_counter_ns() - start)
        if header_length is None:
            return Response(body, media_type="application/json")
        return Response(body, media_type="application/octet-stream", headers={HEADER_LENGTH: str(header_length)})

    async def _queue(self, request: Request, version, pending):
        try:
            future = version.batcher.submit(pending)
        except VersionRetired:  # replaced while this request was being read: the new one takes it
            p = request.path_params
            successor = self.repository.resolve(p["model"], p.get("version"))
            future = successor.batcher.submit(pending)
        return await asyncio.wrap_future(future)

    async def _body(self, request: Request) -> bytes:
        """The request body, refused (413) past the size limit before it is all read, and
        inflated when the client compressed it (gzip or deflate), under the same limit."""
        limit = self.server.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ServingError(413, f"the request body is {declared} bytes; this server takes at most {limit}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ServingError(413, f"the request body exceeds {limit} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        encoding = request.headers.get("content-encoding", "").lower()
        if encoding in ("gzip", "deflate"):
            inflate = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
            try:
                body = inflate.decompress(body, limit + 1)
            except zlib.error as e:
                raise ServingError(400, f"the {encoding} body does not inflate: {e}") from None
            if len(body) > limit or inflate.unconsumed_tail:
                raise ServingError(413, f"the inflated request body exceeds {limit} bytes")
        elif encoding not in ("", "identity"):
            raise ServingError(415, f"Content-Encoding {encoding!r} is not supported (gzip, deflate)")
        return body
