"""The exceptions the kernel runtime raises. Each message is one line a user can act on."""


class KernelError(Exception):
    """Base of every runtime error; also a kernel that failed in a way not covered below."""

    #: Short machine-readable name, e.g. for an error reply on the wire.
    code = "kernel_error"


class UnknownKernel(KernelError, LookupError):
    code = "unknown_kernel"


class BadInput(KernelError, ValueError):
    """Wrong buffer size, a missing/unknown/mistyped/out-of-range param, a bad file."""

    code = "bad_input"


class MemoryLimitExceeded(KernelError, MemoryError):
    code = "memory_limit"


class DeadlineExceeded(KernelError, TimeoutError):
    code = "deadline"


class Cancelled(KernelError):
    code = "cancelled"


class IntegrityError(KernelError):
    """A module whose sha256 does not match the manifest, a forbidden import, a broken manifest."""

    code = "integrity"
