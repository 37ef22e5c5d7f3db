"""Say what went wrong and what to do about it, for the message bar (no Qt here)."""

from __future__ import annotations

from veraltheim.client.ui.inputs import InputError

# What the user can do, by exception class name (the classes live in wasm/ and client/; matching by
# name keeps this table free of imports that may not be installed, e.g. in a service-only build).
HINTS = {
    "BadInput": "Check the parameters and the input file, then run again.",
    "UnknownKernel": "Pick another kernel; this one is not in the catalogue.",
    "MemoryLimitExceeded": "Use a smaller input, or run it on the service (Where: Remote).",
    "DeadlineExceeded": "Use a smaller input, raise the deadline in Settings, or run it remotely.",
    "IntegrityError": "The kernel files do not match the manifest; reinstall Veraltheim.",
    "JoinError": "Check the token in Connection or Settings, then connect again.",
    "PushTimeout": "The service did not answer in time; check the connection and run again.",
    "ConnectionError": "Check the service address in Connection and that the service runs.",
    "OSError": "Check the file and folder, then try again.",
}
DEFAULT_HINT = "Try again; if it keeps happening, look at the Inspector for details."


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(what happened, what to do)."""
    if isinstance(exc, InputError):
        return str(exc), "Pick another file (Open, or drop one on the Workbench)."
    text = str(exc) or type(exc).__name__
    for cls in type(exc).__mro__:
        if cls.__name__ in HINTS:
            return text, HINTS[cls.__name__]
    return f"{type(exc).__name__}: {text}", DEFAULT_HINT
