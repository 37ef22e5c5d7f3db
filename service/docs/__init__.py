"""Shared documents: the `doc:*` channel, the in-memory registry and the durable update log."""
