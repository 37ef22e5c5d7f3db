"""Users' kernels on the service: install (upload), remove and fetch, for one channel's user.

An upload is a binary envelope {spec} + module, bounded before it is parsed; it passes the same
checks as a local `veraltheim-kernel add` (on a worker thread, one install at a time), then is
stored under <data_dir>/kernels by sha256 and served in the catalogue with who and when.
Installing and removing need the `kernels` grant in the token.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from veraltheim.protocol.constants import KERNELS_GRANT
from veraltheim.protocol.envelope import pack_envelope, unpack_envelope
from veraltheim.protocol.errors import ProtocolError
from veraltheim.protocol.reasons import ComputeEvent, Reason
from veraltheim.service.auth import has_grant
from veraltheim.service.compute.errors import ComputeError
from veraltheim.service.compute.native import NATIVE_KERNELS

SHARING_EVENTS = (ComputeEvent.KERNEL_ADD, ComputeEvent.KERNEL_REMOVE, ComputeEvent.KERNEL_FETCH)
MAX_NAME_CHARS = 64


def upload_limits() -> tuple[int, int]:
    """(largest upload, largest envelope header): a module, a spec and base64 examples."""
    from veraltheim.wasm import user_kernels as uk

    header = uk.MAX_SPEC_JSON_BYTES + (uk.MAX_EXAMPLES_BYTES * 4) // 3 + 4096
    return 4 + header + uk.MAX_MODULE_BYTES, header


class KernelSharing:
    def __init__(self, compute: Any, user: str, claims: dict[str, Any] | None) -> None:
        self.compute = compute
        self.user = user
        self.claims = claims

    async def handle(self, event: str, payload: Any) -> Any:
        if self.compute.user_kernels is None or self.compute.runtime is None:
            raise ComputeError(Reason.REFUSED, "this service does not take users' kernels")
        if event == ComputeEvent.KERNEL_FETCH:
            return await self._fetch(payload)
        if not has_grant(self.claims, KERNELS_GRANT):
            verb = "installing" if event == ComputeEvent.KERNEL_ADD else "removing"
            raise ComputeError(
                Reason.FORBIDDEN,
                f"{verb} kernels needs a token with the '{KERNELS_GRANT}' grant "
                f"(veraltheim-service token issue --user {self.user} --grant {KERNELS_GRANT})",
            )
        if event == ComputeEvent.KERNEL_ADD:
            return await self._add(payload)
        assert event == ComputeEvent.KERNEL_REMOVE
        return await self._remove(payload)

    async def _add(self, payload: Any) -> dict[str, Any]:
        from veraltheim.wasm.user_kernels import InstallRefused, install, package_from_wire

        if not isinstance(payload, bytes | bytearray | memoryview):
            raise ComputeError(
                Reason.BAD_REQUEST, "kernel_add takes a binary envelope {spec} + module"
            )
        max_upload, max_header = upload_limits()
        if len(payload) > max_upload:
            raise ComputeError(
                Reason.BAD_REQUEST, f"upload of {len(payload)} bytes is over {max_upload}"
            )
        if len(payload) >= 4 and struct.unpack_from(">I", payload)[0] > max_header:
            raise ComputeError(
                Reason.BAD_REQUEST, f"the envelope header is over {max_header} bytes"
            )
        try:
            header, wasm = unpack_envelope(payload)
            package = package_from_wire(wasm, header.get("spec"))
        except ProtocolError as exc:
            raise ComputeError(Reason.BAD_REQUEST, str(exc)) from None
        except InstallRefused as exc:
            raise ComputeError(Reason.REFUSED, str(exc), check=exc.check) from None
        compute = self.compute
        builtin = frozenset(compute.runtime.builtin.kernels) | frozenset(NATIVE_KERNELS)
        async with self.compute.install_lock:
            try:
                info = await asyncio.to_thread(
                    install,
                    package,
                    compute.user_kernels,
                    installed_by=self.user,
                    reserved_names=builtin,
                    memory_limit_bytes=compute.memory_limit_bytes,
                )
            except InstallRefused as exc:
                raise ComputeError(Reason.REFUSED, str(exc), check=exc.check) from None
            compute.user_kernels_changed()
        return info.to_dict()

    async def _remove(self, payload: Any) -> dict[str, Any]:
        name = self._name(payload)
        compute = self.compute
        async with self.compute.install_lock:
            if name not in compute.runtime.user_kernel_names:
                raise ComputeError(Reason.UNKNOWN_KERNEL, f"{name!r} is not a user kernel here")
            info = await asyncio.to_thread(compute.user_kernels.remove, name)
            compute.user_kernels_changed()
        return {"name": name, "sha256": info.sha256, "removed_by": self.user}

    async def _fetch(self, payload: Any) -> bytes:
        name = self._name(payload)
        if name not in self.compute.runtime.user_kernel_names:
            raise ComputeError(Reason.UNKNOWN_KERNEL, f"{name!r} is not a user kernel here")
        package = await asyncio.to_thread(self.compute.user_kernels.package, name)
        return pack_envelope({"spec": package.wire_spec(), "sha256": package.sha256}, package.wasm)

    @staticmethod
    def _name(payload: Any) -> str:
        name = payload.get("name") if isinstance(payload, dict) else None
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
            raise ComputeError(
                Reason.BAD_REQUEST, f"needs {{name}}, a string of 1-{MAX_NAME_CHARS}"
            )
        return name
