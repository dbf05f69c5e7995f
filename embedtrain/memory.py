"""Whether a run's arrays fit: checked before anything large is allocated, against the
memory the machine has available and the process's address-space limit (``ulimit -v``),
so that a model too large for either is refused in one line naming its cause, not ended
by the kernel or by an allocation failing inside a compiled library."""

from __future__ import annotations

import resource

#: Address space a run takes beyond its arrays: thread stacks, BLAS buffers, compiling
#: its kernels (LLVM); and its temporaries (minibatches, the export's blocks) as a share
#: of its arrays. Measured on the shipped corpus (27,010 words, ns, 1 epoch) under
#: ``ulimit -v``: d = 100 (31 MiB of arrays) ran with 253 MiB left after the imports and
#: failed with 204; d = 300 (93 MiB) ran with 350 and failed with 253.
HEADROOM_BYTES = 192 * 2**20
TEMPORARY_SHARE = 0.5


def shortage(needed: int) -> str | None:
    """What stands in the way of allocating ``needed`` more bytes, or None if they fit:
    the available memory, or what ``ulimit -v`` leaves of the address space."""
    limit, _ = resource.getrlimit(resource.RLIMIT_AS)
    total = needed * (1 + TEMPORARY_SHARE) + HEADROOM_BYTES
    if limit != resource.RLIM_INFINITY:
        left = limit - (_proc_bytes("/proc/self/status", "VmSize:") or 0)
        if left < total:
            return (
                f"the address-space limit (ulimit -v) leaves {size(max(left, 0))} (raise it, "
                f"to {size(limit + total - left)} or more)"
            )
    available = _proc_bytes("/proc/meminfo", "MemAvailable:")
    if available is not None and available < needed:
        return f"the machine has {size(available)} of memory available"
    return None


def size(count: float) -> str:
    """Bytes in the largest unit that keeps the number at or above 1 (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def _proc_bytes(path: str, field: str) -> int | None:
    """A size in kB from a /proc file (``/proc/self/status``, ``/proc/meminfo``), in bytes;
    None where there is none."""
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
