"""Shared documents on the client: a SQLite cache (`cache`), pycrdt Docs synced over `doc:*`
channels (`shared_doc`, `store`), and typed views (`run_history`, `notes`).

The package imports none of its modules: the app's first frame needs `run_record` and `cache`,
not pycrdt.
"""
