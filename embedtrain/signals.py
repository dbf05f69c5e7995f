"""Signals that stop a run: Ctrl-C (SIGINT), what ``kill``, ``timeout``, Slurm and ``docker
stop`` send (SIGTERM), and a closed terminal (SIGHUP). Training and the writing of outputs
turn them into a flag that is checked where stopping is safe, instead of an exception
raised wherever the main thread happens to be."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: The flags of the signals_set_flag blocks in force, innermost last.
_ACTIVE_FLAGS: list[threading.Event] = []


def stop_requested() -> bool:
    """Whether a stop signal has arrived inside a :func:`signals_set_flag` block still in
    force: code that waits (for a FIFO's reader) polls it, since a handler that only sets
    a flag leaves a blocking system call waiting."""
    return any(flag.is_set() for flag in _ACTIVE_FLAGS)


@contextmanager
def signals_set_flag() -> Iterator[threading.Event]:
    """While inside, a stop signal sets the returned event (previous handlers restored
    after). Off the main thread, where handlers cannot be installed, the event never sets."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {number: signal.signal(number, lambda *_: flag.set()) for number in STOP_SIGNALS}
    _ACTIVE_FLAGS.append(flag)
    try:
        yield flag
    finally:
        _ACTIVE_FLAGS.remove(flag)
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise KeyboardInterrupt as Ctrl-C does, so the
    cleanup of a command-line run (temporary files, one-line message) happens for all
    three; previous handlers restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.default_int_handler
    previous = {number: signal.signal(number, handler) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
