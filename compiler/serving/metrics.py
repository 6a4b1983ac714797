"""Prometheus metrics under Triton's names, read from the statistics (`stats.py`) at scrape
time, so a dashboard built for Triton Inference Server works unchanged.

prometheus-client appends `_total` to every counter's name; Triton's counters have no such
suffix (`nv_inference_request_success`), so they are exposed untyped under their exact
names. Durations are in microseconds, as Triton's `*_duration_us` counters are.
"""
from __future__ import annotations

from prometheus_client.core import CollectorRegistry, GaugeMetricFamily, Metric

# name -> (help, statistics duration it sums, or None for a count)
_DURATIONS = {
    "nv_inference_request_duration_us": ("Cumulative inference request duration in microseconds (cache hits included)", "success"),
    "nv_inference_queue_duration_us": ("Cumulative inference queuing duration in microseconds", "queue"),
    "nv_inference_compute_input_duration_us": ("Cumulative compute input duration in microseconds", "compute_input"),
    "nv_inference_compute_infer_duration_us": ("Cumulative compute inference duration in microseconds", "compute_infer"),
    "nv_inference_compute_output_duration_us": ("Cumulative inference compute output duration in microseconds", "compute_output"),
    "nv_cache_hit_duration_per_model": ("Cumulative duration of response cache hits in microseconds", "cache_hit"),
    "nv_cache_miss_duration_per_model": ("Cumulative duration of response cache misses in microseconds", "cache_miss"),
}


def _family(name: str, help_text: str) -> Metric:
    return Metric(name, help_text, "unknown")


class ServingCollector:
    """Yields the metric families of every served version on each scrape."""

    def __init__(self, repository, cache):
        self.repository = repository
        self.cache = cache

    def collect(self):
        success = _family("nv_inference_request_success", "Number of successful inference requests, all batch sizes")
        failure = _family("nv_inference_request_failure", "Number of failed inference requests, all batch sizes")
        count = _family("nv_inference_count", "Number of inferences performed (cached requests not included)")
        execs = _family("nv_inference_exec_count", "Number of model executions performed (cached requests not included)")
        hits = _family("nv_cache_num_hits_per_model", "Number of response cache hits per model")
        misses = _family("nv_cache_num_misses_per_model", "Number of response cache misses per model")
        padded = _family("compiler_batch_padded_samples", "Samples added to fill a merged batch up to an artifact's size")
        pending = GaugeMetricFamily("nv_inference_pending_request_count",
                                    "Instantaneous number of pending requests awaiting execution per-model.",
                                    labels=["model", "version"])
        durations = {name: _family(name, text) for name, (text, _) in _DURATIONS.items()}
        for v in self.repository.versions():
            labels = {"model": v.name, "version": str(v.version)}
            s = v.stats.to_json(v.name, str(v.version))
            stats = s["inference_stats"]
            success.add_sample("nv_inference_request_success", labels, stats["success"]["count"])
            for reason, n in sorted(s["failures"].items()):
                failure.add_sample("nv_inference_request_failure", dict(labels, reason=reason), n)
            if not s["failures"]:
                failure.add_sample("nv_inference_request_failure", dict(labels, reason="REJECTED"), 0)
            count.add_sample("nv_inference_count", labels, s["inference_count"])
            execs.add_sample("nv_inference_exec_count", labels, s["execution_count"])
            hits.add_sample("nv_cache_num_hits_per_model", labels, stats["cache_hit"]["count"])
            misses.add_sample("nv_cache_num_misses_per_model", labels, stats["cache_miss"]["count"])
            padded.add_sample("compiler_batch_padded_samples", labels, s["padded_samples"])
            pending.add_metric([v.name, str(v.version)], v.stats.pending)
            for name, (_, key) in _DURATIONS.items():
                durations[name].add_sample(name, labels, stats[key]["ns"] // 1000)
        yield from (success, failure, count, execs, pending, *durations.values(), hits, misses, padded)
        if self.cache is not None:
            yield GaugeMetricFamily("nv_cache_util", "Response cache utilization (bytes used / capacity)",
                                    value=self.cache.bytes / max(1, self.cache.max_bytes))


def registry_for(repository, cache) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServingCollector(repository, cache))
    return registry
