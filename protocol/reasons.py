"""The words both ends of the link agree on, beyond Phoenix's own (constants.py): the `reason`
of every error reply the service sends, and the events of the compute topic.

StrEnum members are plain strings on the wire (json encodes them as their value) and compare
equal to the text a peer sent, so `reply["reason"] == Reason.BUSY` works on received JSON.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """`{"reason": ...}` of an error reply (a refused join, a refused push, a failed job)."""

    # Any topic: the socket and the channel machinery.
    RATE_LIMITED = "rate_limited"  # over the socket's or user's frame/byte budget (also docs)
    UNMATCHED_TOPIC = "unmatched topic"  # Phoenix's own words: no channel serves the topic
    SERVICE_SHUTTING_DOWN = "service is shutting down"
    TOPIC_TOO_LONG = "topic too long"
    TOO_MANY_CHANNELS = "too many channels"
    JOIN_CRASHED = "join crashed"
    BAD_JOIN_PAYLOAD = "join payload must be a JSON object"
    UNKNOWN_EVENT = "unknown_event"
    # lobby
    META_TOO_LARGE = "meta too large"
    # compute:<pool>; the first seven are also the kernel runtime's error codes (wasm.errors)
    KERNEL_ERROR = "kernel_error"
    UNKNOWN_KERNEL = "unknown_kernel"
    BAD_INPUT = "bad_input"
    MEMORY_LIMIT = "memory_limit"
    DEADLINE = "deadline"
    CANCELLED = "cancelled"
    INTEGRITY = "integrity"
    BUSY = "busy"  # the job queue is full
    BAD_REQUEST = "bad_request"
    WORKER_CRASHED = "worker_crashed"
    SHUTTING_DOWN = "shutting_down"
    INTERNAL = "internal"
    UNKNOWN_POOL = "unknown_pool"
    UNKNOWN_JOB = "unknown_job"
    FORBIDDEN = "forbidden"  # installing or removing kernels without the token's grant
    REFUSED = "refused"  # a user kernel failed an install check (the reply names the `check`)
    # doc:<name>
    BAD_NAME = "bad_name"
    TOO_MANY_DOCUMENTS = "too_many_documents"
    BAD_MESSAGE = "bad_message"
    TOO_LARGE = "too_large"
    READ_ONLY = "read_only"
    BAD_UPDATE = "bad_update"
    STORE_FAILED = "store_failed"
    # The client's own, for a reply or close it makes up (never sent)
    MALFORMED_REPLY = "malformed reply"
    JOIN_REFUSED = "join refused"


class ComputeEvent(StrEnum):
    """Events of a `compute:<pool>` topic (README, "Compute anywhere")."""

    REQUEST = "compute_request"  # client -> service: run a kernel; the reply is the result
    CANCEL = "cancel"  # client -> service: stop a running job {id}
    PROBE = "probe"  # client -> service: echo these bytes (the client times the link)
    KERNELS = "kernels"  # client -> service: the catalogue and the load
    PROGRESS = "progress"  # service -> client: {id, done, total} while a job runs
    # Users' kernels: installing and removing need the token's `kernels` grant.
    KERNEL_ADD = "kernel_add"  # client -> service: envelope {spec} + module; install it
    KERNEL_REMOVE = "kernel_remove"  # client -> service: {name}
    KERNEL_FETCH = (
        "kernel_fetch"  # client -> service: {name}; reply: envelope {spec, sha256} + module
    )
