"""Scale-out on Ray Serve: replicas of one model repository behind Ray's router.

    import ray
    from ray import serve
    from compiler.serving.ray_serve import application

    ray.init()
    serve.run(application("REPO", num_replicas=4), route_prefix="/")   # Open Inference Protocol on :8000

Each replica is a Ray actor running the same ASGI app as `compile serve` (`app.py`): its
own repository poller, dynamic batcher, response cache and statistics; Ray's proxy spreads
requests over the replicas. `max_ongoing_requests` is how many requests Ray lets a replica
hold at once, and so the largest batch its batcher can ever form: it defaults to the
repository's largest `max_batch_size` times two, so one batch can run while the next fills.

Needs the `ray` extra (`pip install "compiler[ray]"`); nothing here is imported by
`compile serve`.
"""
from __future__ import annotations

from pathlib import Path


def build_app(repository: str, options: dict):
    """The ASGI app of one replica (called on the replica by Ray Serve)."""
    from .server import Server

    server = Server(repository, metrics_port=None, **options)
    server.start_services()
    return server.app


def _largest_batch(repository: Path) -> int:
    from .repository import Repository

    repo = Repository(repository)
    try:
        return max((v.max_batch_size for v in repo.versions()), default=1) or 1
    finally:
        repo.close()


def application(repository, *, num_replicas: int = 1, max_ongoing_requests: int | None = None,
                ray_actor_options: dict | None = None, name: str = "compiler", **options):
    """A Ray Serve application serving `repository` from `num_replicas` replicas; `options`
    as `compiler.serving.Server` (poll_interval_s, cache_bytes, max_request_bytes, num_threads)."""
    from ray import serve

    from . import _check_extra

    _check_extra()
    root = Path(repository).resolve()
    if max_ongoing_requests is None:
        max_ongoing_requests = 2 * _largest_batch(root)
    repository, options = str(root), dict(options)

    def builder():  # a function: Ray Serve evaluates it on each replica (an object would be taken for the app)
        return build_app(repository, options)

    @serve.deployment(name=name, num_replicas=num_replicas, max_ongoing_requests=max_ongoing_requests,
                      ray_actor_options=ray_actor_options or {"num_cpus": 1})
    @serve.ingress(builder)
    class CompilerReplica:
        """One replica: the app `build_app` returns, nothing else."""

    return CompilerReplica.bind()
