"""More than one node: Redis (pub/sub, presence, document logs) and Dask (compute).

Nothing here is imported unless a redis:// or dask:// URL is configured; `redis` and
`distributed` come with the `cluster` extra (`pip install veraltheim[cluster]`).
"""
