"""`ServingError`: a request the server refuses, with the HTTP status the Open Inference
Protocol gives it; the app answers it as `{"error": message}` and keeps serving."""
from __future__ import annotations

from ..ir.errors import CompilerError


class ServingError(CompilerError):
    """A refused request: `status` is the HTTP status (4xx: the request's fault; 503: the
    model or its queue cannot take it now; 504: it waited past its timeout)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class RepositoryError(CompilerError):
    """A model directory that cannot be served: a bad config.json, an artifact that does not
    load, artifacts of one version that disagree. The model is reported unavailable with
    this reason; the other models keep serving."""
