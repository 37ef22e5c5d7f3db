"""The exceptions the kernel runtime raises. Each message is one line a user can act on."""

from veraltheim.protocol.reasons import Reason


class KernelError(Exception):
    """Base of every runtime error; also a kernel that failed in a way not covered below."""

    #: Short machine-readable name: the `reason` of the service's error reply for it.
    code: str = Reason.KERNEL_ERROR


class UnknownKernel(KernelError, LookupError):
    code = Reason.UNKNOWN_KERNEL


class BadInput(KernelError, ValueError):
    """Wrong buffer size, a missing/unknown/mistyped/out-of-range param, a bad file."""

    code = Reason.BAD_INPUT


class MemoryLimitExceeded(KernelError, MemoryError):
    code = Reason.MEMORY_LIMIT


class DeadlineExceeded(KernelError, TimeoutError):
    code = Reason.DEADLINE


class Cancelled(KernelError):
    code = Reason.CANCELLED


class IntegrityError(KernelError):
    """A module whose sha256 does not match the manifest, a forbidden import, a broken manifest."""

    code = Reason.INTEGRITY
