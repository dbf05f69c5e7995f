"""Array backend: every NumPy/CuPy difference lives here and nowhere else.

:class:`Ops` is written once against ``xp`` (NumPy); :class:`CupyOps` swaps the array
module and overrides only what CuPy does differently (scatter-add, host copies,
synchronisation, memory pool). Nothing else in the package imports CuPy.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from embedtrain.errors import UsageError

#: Set to ``numpy`` to run the GPU code path (the batched engine) on NumPy: how the
#: tests exercise it on machines without a GPU.
GPU_BACKEND_ENV = "EMBEDTRAIN_GPU_BACKEND"
GPU_INSTALL_HINT = "pip install 'embedtrain[gpu]'"


class Ops:
    """Array operations on the host with NumPy."""

    name = "numpy"
    xp: Any = np

    def __init__(self, gpu_path: bool = False) -> None:
        #: True when this backend stands for ``--device gpu``: the batched engine then
        #: runs every head, as it would on a real GPU.
        self.gpu_path = gpu_path

    def asarray(self, array: Any, dtype: Any = None) -> Any:
        """Copy a host array to this backend (no copy when already there)."""
        return self.xp.asarray(array, dtype=dtype)

    def to_host(self, array: Any) -> np.ndarray:
        return np.asarray(array)

    def scatter_add(self, target: Any, indices: Any, values: Any) -> None:
        """``target[indices] += values`` with repeated indices accumulated, not dropped."""
        np.add.at(target, indices, values)

    def random_state(self, seed: int) -> Any:
        """A seeded random generator living on this backend."""
        return self.xp.random.RandomState(seed % (2**32))

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the host)."""

    def release_memory(self) -> None:
        """Return cached device memory to the system (a no-op on the host)."""


class CupyOps(Ops):
    """The same operations on a CUDA GPU with CuPy."""

    name = "cupy"

    def __init__(self, cupy: Any) -> None:
        import cupyx

        super().__init__(gpu_path=True)
        self.xp = cupy
        self._cupyx = cupyx

    def to_host(self, array: Any) -> np.ndarray:
        return self.xp.asnumpy(array)

    def scatter_add(self, target: Any, indices: Any, values: Any) -> None:
        self._cupyx.scatter_add(target, indices, values)

    def synchronize(self) -> None:
        self.xp.cuda.Stream.null.synchronize()

    def release_memory(self) -> None:
        self.xp.get_default_memory_pool().free_all_blocks()


class GpuUnavailable(UsageError):
    """No usable GPU: CuPy missing or no working CUDA device."""


def gpu_ops() -> Ops:
    """The GPU backend, or :class:`GpuUnavailable` with a one-line reason."""
    if os.environ.get(GPU_BACKEND_ENV, "").lower() == "numpy":
        return Ops(gpu_path=True)
    try:
        import cupy
    except ImportError as exc:
        raise GpuUnavailable(
            f"--device gpu needs CuPy, which is not installed: {GPU_INSTALL_HINT}"
        ) from exc
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise GpuUnavailable("--device gpu: CuPy is installed but finds no CUDA device")
        cupy.zeros(1).sum().item()
    except GpuUnavailable:
        raise
    except Exception as exc:  # CuPy raises several driver/runtime error types
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GpuUnavailable(f"--device gpu: no working CUDA device ({first_line})") from exc
    return CupyOps(cupy)


def select_ops(device: str, quiet: bool = False) -> Ops:
    """Backend for ``--device``: ``cpu``, ``gpu`` or ``auto`` (GPU when one works; otherwise
    the CPU, said once unless ``quiet``)."""
    if device == "cpu":
        return Ops()
    if device == "gpu":
        return gpu_ops()
    try:
        return gpu_ops()
    except GpuUnavailable as exc:
        if not quiet:
            print(f"embedtrain: no usable GPU, training on the CPU ({exc})", file=sys.stderr)
        return Ops()
