"""client/ui/stop_signals.py: Ctrl+C and SIGTERM from the app's start to its end."""

from __future__ import annotations

import asyncio
import os
import signal

from veraltheim.client.ui.stop_signals import StopSignals


def run_listening(signals: StopSignals, send: int | None) -> list[int]:
    """Listen on a fresh loop, maybe send a signal, and return what reached the loop."""
    stops: list[int] = []

    async def scenario() -> None:
        signals.listen(asyncio.get_running_loop(), lambda: stops.append(len(stops)))
        if send is not None:
            os.kill(os.getpid(), send)
        for _ in range(100):  # a few turns: a signal handed on arrives by call_soon
            await asyncio.sleep(0)

    asyncio.run(scenario())
    return stops


def test_a_signal_before_there_is_a_loop_is_kept_for_it():
    signals = StopSignals()
    signals.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)  # no loop yet: kept, the process lives on
        assert signals.received == [signal.SIGTERM]
        assert run_listening(signals, None) == [0]  # at once, once
    finally:
        signals.restore()


def test_a_signal_the_loop_did_not_take_over_is_handed_to_it_and_restore_puts_back():
    before = signal.getsignal(signal.SIGTERM)
    signals = StopSignals()
    signals.install()
    try:
        # (where asyncio cannot take the signals over, as on Windows)
        assert run_listening(signals, signal.SIGINT) == [0]
    finally:
        signals.restore()
    assert signal.getsignal(signal.SIGTERM) is before
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
