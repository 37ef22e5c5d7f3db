"""Why a compute job failed: the `reason` of an error reply (protocol.reasons.Reason)."""

from __future__ import annotations

from veraltheim.protocol.reasons import Reason


class ComputeError(Exception):
    """A job that did not produce output, and why."""

    def __init__(self, reason: Reason, message: str, **extra: object) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.extra = extra

    def response(self) -> dict[str, object]:
        return {"reason": self.reason, "message": self.message, **self.extra}


def reason_for(exc: BaseException) -> Reason:
    """The reason for an exception raised by a kernel run: the runtime's errors carry theirs as
    `code` (wasm.errors); anything else is internal."""
    if isinstance(exc, ComputeError):
        return exc.reason
    code = getattr(exc, "code", None)
    return Reason(code) if code in set(Reason) else Reason.INTERNAL
