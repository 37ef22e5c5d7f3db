"""DocumentStore: the documents this client has open, from the cache, synced when a socket is
given. Works with no service at all: the app starts offline from the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from veraltheim.client.state.cache import DocCache
from veraltheim.client.state.shared_doc import SharedDoc
from veraltheim.protocol.ysync import MAX_DOC_NAME_CHARS


class DocumentStore:
    """`path`: the cache file (or a directory for it); None: the user data dir (platformdirs).
    `socket`: a client.net Socket, or None to work offline (attach one later)."""

    def __init__(self, path: Path | str | None = None, socket: Any = None) -> None:
        self.cache = DocCache(path)
        self.socket = socket
        self._docs: dict[str, SharedDoc] = {}
        self._params: dict[str, dict[str, Any]] = {}

    async def open(
        self, name: str, *, read_only: bool = False, params: dict[str, Any] | None = None
    ) -> SharedDoc:
        """The document `name`, loaded from the cache and joined on the socket if there is one.
        Opening an open document returns the same SharedDoc."""
        if not 1 <= len(name) <= MAX_DOC_NAME_CHARS:
            raise ValueError(f"a document name is 1 to {MAX_DOC_NAME_CHARS} characters")
        doc = self._docs.get(name)
        if doc is None:
            doc = self._docs[name] = SharedDoc(name, self.cache)
            self._params[name] = {**(params or {}), **({"read_only": True} if read_only else {})}
            if self.socket is not None:
                doc.attach(self.socket, self._params[name])
        return doc

    def attach(self, socket: Any) -> None:
        """Go online: join every open document on `socket` (and documents opened later)."""
        self.socket = socket
        for name, doc in self._docs.items():
            doc.attach(socket, self._params[name])

    def cached_names(self) -> list[str]:
        """Every document in the cache, open or not."""
        return self.cache.names()

    def __contains__(self, name: str) -> bool:
        return name in self._docs

    async def close(self, name: str) -> None:
        doc = self._docs.pop(name, None)
        self._params.pop(name, None)
        if doc is not None:
            await doc.close()

    async def aclose(self) -> None:
        for name in list(self._docs):
            await self.close(name)
        self.cache.close()

    async def __aenter__(self) -> DocumentStore:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
