"""Benchmarks against peers (onnxruntime, TVM, torch); not part of the test suite. See README.md."""
