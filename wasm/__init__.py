"""WebAssembly kernels and their sandboxed host runtime (wasmtime).

from veraltheim.wasm import Runtime, CancelToken
rt = Runtime()
result = rt.run("image.blur", rgba, {"width": w, "height": h, "radius": 3})
"""

from .errors import (
    BadInput,
    Cancelled,
    DeadlineExceeded,
    IntegrityError,
    KernelError,
    MemoryLimitExceeded,
    UnknownKernel,
)
from .job import CancelToken
from .limits import DEFAULT_DEADLINE_S, DEFAULT_MEMORY_LIMIT_BYTES
from .manifest import (
    DEFAULT_MANIFEST_PATH,
    KernelSpec,
    ModuleSpec,
    ParamSpec,
    kernel_spec_from_dict,
)
from .outputs import decode_output
from .runtime import ModuleLoad, RunResult, Runtime

__all__ = [
    "DEFAULT_DEADLINE_S",
    "DEFAULT_MANIFEST_PATH",
    "DEFAULT_MEMORY_LIMIT_BYTES",
    "BadInput",
    "CancelToken",
    "Cancelled",
    "DeadlineExceeded",
    "IntegrityError",
    "KernelError",
    "KernelSpec",
    "MemoryLimitExceeded",
    "ModuleLoad",
    "ModuleSpec",
    "ParamSpec",
    "RunResult",
    "Runtime",
    "UnknownKernel",
    "decode_output",
    "kernel_spec_from_dict",
]
