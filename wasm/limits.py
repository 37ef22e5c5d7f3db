"""Default limits of the kernel runtime: the one place these numbers live."""

# wasm32 cannot address more than 4 GiB; 1 GiB holds a 16k x 16k RGBA8 input or
# 8 Mi f64 in and out many times over.
WASM32_MAX_BYTES = 4 << 30
DEFAULT_MEMORY_LIMIT_BYTES = 1 << 30
DEFAULT_DEADLINE_S = 30.0

# How often the ticker thread advances the engine epoch while a job runs: the
# granularity of deadlines and cancellation (each tick costs one Python callback
# per running job).
EPOCH_TICK_S = 0.002

# After a job, an instance whose linear memory grew beyond this is dropped so a
# one-off big job does not pin its memory for the life of the thread. Big enough that
# repeated jobs on 8 Mi f64 (64 MiB in, 64 MiB out) keep their warm memory: a fresh
# instance pays the page faults again (about 30 ms for data.stats on 8 Mi f64).
RETAIN_MEMORY_BYTES = 256 << 20
