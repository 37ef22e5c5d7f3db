"""Why a compute job failed: the `reason` of an error reply, one name per failure."""

from __future__ import annotations

BUSY = "busy"
UNKNOWN_KERNEL = "unknown_kernel"
BAD_INPUT = "bad_input"
BAD_REQUEST = "bad_request"
DEADLINE = "deadline"
CANCELLED = "cancelled"
WORKER_CRASHED = "worker_crashed"
MEMORY_LIMIT = "memory_limit"
INTEGRITY = "integrity"
KERNEL_ERROR = "kernel_error"
SHUTTING_DOWN = "shutting_down"
INTERNAL = "internal"

# wasm exception class name -> reason; by name so the worker needs no import order games.
_BY_CLASS = {
    "UnknownKernel": UNKNOWN_KERNEL,
    "BadInput": BAD_INPUT,
    "MemoryLimitExceeded": MEMORY_LIMIT,
    "DeadlineExceeded": DEADLINE,
    "Cancelled": CANCELLED,
    "IntegrityError": INTEGRITY,
    "KernelError": KERNEL_ERROR,
}


class ComputeError(Exception):
    """A job that did not produce output; `reason` is one of the names above."""

    def __init__(self, reason: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.extra = extra

    def response(self) -> dict[str, object]:
        return {"reason": self.reason, "message": self.message, **self.extra}


def reason_for(exc: BaseException) -> str:
    """The reason for an exception raised by a kernel run (wasm errors by class, else internal)."""
    if isinstance(exc, ComputeError):
        return exc.reason
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code:
        return code
    for cls in type(exc).__mro__:
        if cls.__name__ in _BY_CLASS:
            return _BY_CLASS[cls.__name__]
    return INTERNAL
