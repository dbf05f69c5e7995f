"""The cluster protocol without Ray, for the tests: the workers as objects in this process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from embedtrain.distributed import ShardWorker, WorkerLost, WorkerRestarted
from embedtrain.settings import Settings


class InProcessCluster:
    """The workers as :class:`ShardWorker` objects in this process, called one after the
    other: the protocol without Ray, with the same arithmetic. A worker that does not hold the driver's generation
    is reported as lost, as the Ray layer reports a restarted actor."""

    def __init__(self, files: list[str], settings: Settings, allow_binary: bool = False) -> None:
        self.arguments = [
            (files, settings.to_dict(), index, settings.workers, allow_binary)
            for index in range(settings.workers)
        ]
        self.workers = [ShardWorker(*arguments) for arguments in self.arguments]
        self.size = len(self.workers)

    def map(self, method: str, arguments: Sequence[tuple]) -> list[Any]:
        """Each worker's result in turn; the first loss ends the call (the driver restores
        every worker from the checkpoint, so the others' work would be discarded)."""
        results: list[Any] = []
        for index, args in enumerate(arguments):
            try:
                results.append(self._call(index, method, args))
            except WorkerRestarted:
                raise WorkerLost(index, "restarted") from None
        return results

    def broadcast(self, method: str, *arguments: Any) -> list[Any]:
        return self.map(method, [arguments] * self.size)

    def _call(self, index: int, method: str, arguments: tuple) -> Any:
        return getattr(self.workers[index], method)(*arguments)
