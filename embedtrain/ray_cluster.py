"""The Ray layer of distributed training: each :class:`~embedtrain.distributed.ShardWorker`
runs as a Ray actor (restarted by Ray when its process dies), arguments shared by every
worker go through the object store once, and a worker's loss becomes
:class:`~embedtrain.distributed.WorkerLost` for the driver of :mod:`embedtrain.distributed`.
Ray is imported only here, and only when ``cluster`` is set."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from embedtrain.corpus import Corpus, names_files, open_corpus
from embedtrain.distributed import (
    MAX_WORKER_LOSSES,
    ClusterEpochs,
    ClusterStats,
    ShardWorker,
    WorkerLost,
    WorkerRestarted,
    build_vocabulary_on,
)
from embedtrain.engines import choose_engine
from embedtrain.errors import ClusterError, EmbedtrainError, SettingsError
from embedtrain.model import Model
from embedtrain.settings import Settings
from embedtrain.signals import signals_set_flag
from embedtrain.training import TrainingResult, run_training

INSTALL_HINT = "pip install 'embedtrain[distributed]'"
#: The longest path Ray makes inside its session folder (a socket), as Ray 2 names it, and
#: the limit on a Unix socket's path.
RAY_DEEPEST_SOCKET = "session_2026-01-01_00-00-00_000000_4194304/sockets/plasma_store"
UNIX_SOCKET_PATH_BYTES = 107
#: How long the removal of a local Ray's session folder may wait for its processes.
SESSION_REMOVAL_SECONDS = 5.0
#: Worker threads per CPU a local Ray may run (a small cluster on a laptop oversubscribes).
LOCAL_OVERSUBSCRIPTION = 4


def import_ray() -> Any:
    """The ``ray`` module, or :class:`ClusterError` saying how to install it."""
    # Ray's native code would catch a SIGTERM with a handler that prints its stack and
    # aborts; ours ends the run in one line and shuts Ray down.
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--cluster needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


@contextmanager
def connected(address: str, cpus: int) -> Iterator[Any]:
    """Ray, connected: to the connection this process already has, to a new local Ray
    on the loopback address (``ray``, with at least ``cpus`` CPUs), or to the cluster at
    ``address`` (``auto``, ``ray://HOST:PORT``). A connection made here is closed after,
    and a local Ray's session folder removed.

    A stop signal while Ray starts (whose ``init`` turns SIGTERM into ``SystemExit``) ends
    the run as a KeyboardInterrupt, as everywhere else, once what Ray started is shut down."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    local = address == "ray"
    if local:
        check_local_cpus(cpus)
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    session = _session_folder() if local else None
    try:
        with signals_set_flag() as stopped:
            try:
                if local:
                    ray.init(
                        num_cpus=max(os.cpu_count() or 1, cpus),
                        _node_ip_address="127.0.0.1",
                        _temp_dir=session,
                        **quiet,
                    )
                else:
                    ray.init(address=address, **quiet)
            except SystemExit:
                ray.shutdown()
                raise KeyboardInterrupt from None
            except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
                text = str(exc).strip()
                first = text.splitlines()[0] if text else type(exc).__name__
                raise ClusterError(
                    f"cannot connect to the Ray cluster at {address}: {first}"
                ) from exc
        try:
            if stopped.is_set():
                raise KeyboardInterrupt
            yield ray
        finally:
            ray.shutdown()
    finally:
        if session is not None:
            _remove_session(Path(session))


def _session_folder() -> str:
    """A new folder for a local Ray's session files: in TMPDIR where the Unix socket paths
    Ray makes inside it stay under the 107-byte limit, else in /tmp."""
    for base in (tempfile.gettempdir(), "/tmp"):
        deepest = os.path.join(base, "embedtrain-ray-xxxxxxxx", RAY_DEEPEST_SOCKET)
        if len(deepest.encode()) <= UNIX_SOCKET_PATH_BYTES:
            return tempfile.mkdtemp(prefix="embedtrain-ray-", dir=base)
    raise ClusterError("no folder for a local Ray's sockets: /tmp's path is too long")


def _remove_session(session: Path) -> None:
    """Remove a local Ray's session folder, again while its last processes, on their way
    out, still write into it (at most :data:`SESSION_REMOVAL_SECONDS`)."""
    deadline = time.monotonic() + SESSION_REMOVAL_SECONDS
    while True:
        shutil.rmtree(session, ignore_errors=True)
        time.sleep(0.2)
        if not session.exists() or time.monotonic() > deadline:
            return


def check_local_cpus(needed: int) -> None:
    """:class:`ClusterError` unless this machine can run ``needed`` worker threads in a
    local Ray: its CPUs, up to :data:`LOCAL_OVERSUBSCRIPTION` threads each."""
    cpus = os.cpu_count() or 1
    if needed > LOCAL_OVERSUBSCRIPTION * cpus:
        raise ClusterError(
            f"this machine has {cpus} CPUs, and a local Ray runs at most "
            f"{LOCAL_OVERSUBSCRIPTION} threads per CPU; --workers x --threads need {needed:,} "
            "(join a larger cluster with --cluster auto or ray://HOST:PORT)"
        )


class RayCluster:
    """``workers`` :class:`ShardWorker` actors, each with ``threads`` CPUs and its Numba,
    OpenMP and BLAS threads set to that (Ray sets none of them for Numba)."""

    def __init__(self, ray: Any, files: list[str], settings: Settings, allow_binary: bool) -> None:
        self.ray = ray
        threads = settings.threads
        needed = settings.workers * threads
        available = int(ray.cluster_resources().get("CPU", 0))
        if available < needed:
            raise ClusterError(
                f"the Ray cluster has {available} CPUs; {settings.workers} workers x "
                f"{threads} threads need {needed}"
            )
        names = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        threads_env = {name: str(threads) for name in names}
        actor = ray.remote(ShardWorker)
        run = uuid.uuid4().hex[:8]
        self.actors = [
            actor.options(
                name=f"embedtrain-{run}-worker-{index + 1}",
                num_cpus=threads,
                max_restarts=MAX_WORKER_LOSSES,
                max_task_retries=0,
                runtime_env={"env_vars": threads_env},
            ).remote(files, settings.to_dict(), index, settings.workers, allow_binary)
            for index in range(settings.workers)
        ]
        self.size = len(self.actors)

    def map(self, method: str, arguments: Sequence[tuple]) -> list[Any]:
        calls = [
            getattr(actor, method).remote(*args)
            for actor, args in zip(self.actors, arguments, strict=True)
        ]
        return self._results(calls)

    def broadcast(self, method: str, *arguments: Any) -> list[Any]:
        shared = [self.ray.put(argument) for argument in arguments]  # sent once, read by all
        return self._results([getattr(actor, method).remote(*shared) for actor in self.actors])

    def _results(self, calls: list) -> list[Any]:
        """Every call's result; after all have ended, the first loss as WorkerLost and an
        embedtrain error raised in a worker as itself (not wrapped in Ray's traceback)."""
        exceptions = self.ray.exceptions
        results: list[Any] = []
        failure: BaseException | None = None
        for index, call in enumerate(calls):
            try:
                results.append(self.ray.get(call))
            except exceptions.RayTaskError as error:
                cause = error.cause
                if isinstance(cause, WorkerRestarted):
                    failure = failure or WorkerLost(index, "restarted")
                elif isinstance(cause, EmbedtrainError):
                    failure = failure or cause
                else:
                    raise
            except (exceptions.RayActorError, exceptions.ActorUnavailableError) as error:
                reason = type(error).__name__
                failure = failure or WorkerLost(index, reason)
        if failure is not None:
            raise failure
        return results

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)


def shared_corpus_files(
    corpus: Any, settings: Settings, allow_binary: bool
) -> tuple[list[str], str]:
    """The corpus's files as absolute paths (every worker opens them) and its name; a
    corpus that exists only in this process is a :class:`SettingsError`."""
    if not (corpus is None or (names_files(corpus) and str(corpus) != "-")):
        raise SettingsError(
            "--cluster reads the corpus from files every worker can open: give file or "
            "directory paths, not stdin or sentences in memory"
        )
    with open_corpus(corpus, settings.max_sentence_length, allow_binary) as source:
        assert isinstance(source, Corpus)
        return [str(os.path.abspath(path)) for path in source.files], source.name


def train_on_cluster(
    corpus: Any,
    settings: Settings,
    resume: str | os.PathLike | None = None,
    quiet: bool = False,
    callbacks: Sequence = (),
    allow_binary: bool = False,
    stats: ClusterStats | None = None,
) -> tuple[Model, TrainingResult]:
    """Train on ``settings.workers`` Ray workers (``settings.cluster`` says which Ray):
    the vocabulary counted on the workers (or a resumed model's), then
    :func:`embedtrain.training.run_training` on :class:`ClusterEpochs`. Returns the driver's model and the result."""
    _, ops = choose_engine(settings)
    files, name = shared_corpus_files(corpus, settings, allow_binary)
    with connected(settings.cluster, settings.workers * settings.threads) as ray:
        cluster = RayCluster(ray, files, settings, allow_binary)
        try:
            model = Model.start(
                settings, ops, resume, lambda: build_vocabulary_on(cluster, settings, name, quiet)
            )
            result = run_training(model, ClusterEpochs(cluster, model, stats), quiet, callbacks)
        finally:
            cluster.close()
    return model, result
