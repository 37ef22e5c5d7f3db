"""Shared documents on the client: a SQLite cache, pycrdt Docs synced over `doc:*` channels,
and typed views (run history, notes)."""

from veraltheim.client.state.cache import DocCache, default_cache_path
from veraltheim.client.state.notes import Notes
from veraltheim.client.state.run_history import Run, RunHistory
from veraltheim.client.state.shared_doc import SharedDoc
from veraltheim.client.state.store import DocumentStore

__all__ = [
    "DocCache",
    "DocumentStore",
    "Notes",
    "Run",
    "RunHistory",
    "SharedDoc",
    "default_cache_path",
]
