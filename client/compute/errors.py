"""Errors of the dispatcher beyond the Runtime's own (which it raises unchanged)."""

from __future__ import annotations

from veraltheim.wasm import KernelError


class RemoteError(KernelError):
    """The service refused or failed a job; `reason` is its error reply's reason."""

    code = "remote_error"

    def __init__(self, reason: str, message: str, response: dict | None = None) -> None:
        super().__init__(f"service: {message} ({reason})")
        self.reason = reason
        self.response = response or {}


class RemoteUnavailable(KernelError):
    """The job must run on the service (remote-only kernel, or forced) and it is unreachable."""

    code = "remote_unavailable"
