"""Shared documents on the client: a SQLite cache, pycrdt Docs synced over `doc:*` channels,
and typed views (run history, notes)."""

from client.state.cache import DocCache, default_cache_path
from client.state.notes import Notes
from client.state.run_history import Run, RunHistory
from client.state.shared_doc import SharedDoc
from client.state.store import DocumentStore

__all__ = [
    "DocCache",
    "DocumentStore",
    "Notes",
    "Run",
    "RunHistory",
    "SharedDoc",
    "default_cache_path",
]
