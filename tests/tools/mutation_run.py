"""Mutation testing of embedtrain's test suite with a curated list of plausible bugs.

Generic mutation tools flip every operator and drown the few telling survivors in noise;
this list holds bugs a developer could actually write (an off-by-one window, a wrong
total, a dropped check, a scatter that loses duplicates), each run against only the test
files that should catch it. A surviving mutant is a gap in the tests (or an equivalent
mutant, listed with the reason and left out of the score).

Every mutant runs in a temporary git worktree of HEAD, never in the working tree, with an
empty Numba cache of its own: Numba caches compiled code per source file, and a cached
caller would not notice a mutated callee.

    python tests/tools/mutation_run.py            # the whole list (tens of minutes)
    python tests/tools/mutation_run.py --list     # the mutants, checked against HEAD
    python tests/tools/mutation_run.py --only batching
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 600  # a mutant whose tests run longer counts as killed (an endless loop)
PYTEST = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]

# The test files, by what they pin.
API = "tests/test_api.py"
BACKEND = "tests/test_backend.py"
CLI = "tests/test_cli.py"
CORPUS = "tests/test_corpus.py"
EXACT = "tests/test_exact_heads.py"
EXPORT = "tests/test_export.py"
KERNELS = "tests/test_drivers.py"
MODEL = "tests/test_model.py"
RNG = "tests/test_rng.py"
SPARSE = "tests/test_sparse_heads.py"
TRAINING = "tests/test_training.py"
VOCAB = "tests/test_vocab.py"
ADAPTIVE = "tests/test_adaptive.py"
AOP = "tests/test_aop.py"
LSH = "tests/test_lsh.py"
DISTRIBUTED = "tests/test_distributed.py"
RELIABILITY = "tests/test_reliability.py"


@dataclass(frozen=True)
class Mutant:
    """One plausible bug: ``old`` (exactly once in ``module`` at HEAD) becomes ``new``."""

    module: str
    old: str
    new: str
    tests: tuple[str, ...]
    description: str
    equivalent: str | None = None  # why it cannot change behaviour; excluded from the score


def m(
    module: str,
    old: str,
    new: str,
    tests: tuple[str, ...],
    description: str,
    equivalent: str | None = None,
) -> Mutant:
    """Shorthand: module names are relative to embedtrain/."""
    return Mutant(f"embedtrain/{module}", old, new, tests, description, equivalent)


MUTANTS: list[Mutant] = [
    # --- corpus.py ---
    m(
        "corpus.py",
        "self.count += error.end - error.start",
        "self.count += 1",
        (CORPUS,),
        "bad bytes counted per undecodable sequence, not per byte",
    ),
    m(
        "corpus.py",
        "if everything and full < len(tokens):",
        "if everything and full < len(tokens) - 1:",
        (CORPUS,),
        "a final piece of one token is dropped when a long sentence is cut",
    ),
    m(
        "corpus.py",
        'source.rglob("*") if p.is_file()',
        'source.glob("*") if p.is_file()',
        (CORPUS,),
        "directory corpus not read recursively",
    ),
    m(
        "corpus.py",
        "spool.write(head)\n",
        "",
        (CORPUS,),
        "spool loses the checked head (first 64 KiB of stdin)",
    ),
    m(
        "corpus.py",
        "    if path.is_dir():\n        return _directory_files(path)\n    return [path]",
        "    if path.is_dir():\n        return []\n    return [path]",
        (CLI,),
        "output-path check ignores the files of a directory corpus",
    ),
    # --- vocab.py ---
    m(
        "vocab.py",
        "threshold = sample if sample >= 1 else sample * counts.sum()",
        "threshold = sample if sample >= 1 else sample * self.total_words",
        (VOCAB,),
        "subsampling threshold from every token, not the words kept",
    ),
    m(
        "vocab.py",
        "weights = self.counts.astype(np.float64) ** exponent",
        "weights = self.counts.astype(np.float64) ** 0.75",
        (VOCAB,),
        "noise exponent ignored (always 0.75)",
    ),
    m(
        "vocab.py",
        "if c >= min_count), key",
        "if c > min_count), key",
        (VOCAB,),
        "min_count compared with > instead of >=",
    ),
    m(
        "vocab.py",
        "scaled[g] = scaled[g] + scaled[s] - 1.0",
        "scaled[g] = scaled[g] - scaled[s]",
        (VOCAB,),
        "alias table: wrong mass moved off the large bucket",
    ),
    m(
        "vocab.py",
        "for node in range(root - 1, -1, -1):",
        "for node in range(root - 1, 0, -1):",
        (VOCAB,),
        "Huffman depth loop stops before node 0 (most frequent word gets no code)",
    ),
    # --- batching.py ---
    m(
        "batching.py",
        "half_width = window - random.randint(0, window, size=n)",
        "half_width = random.randint(0, window, size=n)",
        (KERNELS,),
        "batched reduced window is b instead of window - b (half-width 0..window-1)",
    ),
    m(
        "batching.py",
        "valid = inside & (sentence[source] == sentence) & ",
        "valid = inside & ",
        (KERNELS, CORPUS),
        "batched windows cross sentence boundaries",
    ),
    m(
        "batching.py",
        "done = ends[seen[ends] <= words]",
        "done = ends[seen[ends] < words]",
        (API,),
        "resume skips one sentence too few when it ends exactly at the resume point",
    ),
    m(
        "batching.py",
        "self.words += int(ids.size) - len(block)",
        "self.words += int(ids.size)",
        (CORPUS, TRAINING),
        "encoded word total counts sentence ends as words",
    ),
    # --- drivers.py ---
    m(
        "drivers.py",
        "min(n, pos + window + 1 - reduced)",
        "min(n, pos + window - reduced)",
        (KERNELS,),
        "compiled window one short on the right",
    ),
    m(
        "drivers.py",
        "while end < ids.shape[0] and ids[end] >= 0:",
        "while end < ids.shape[0] and ids[end] > 0:",
        (KERNELS, TRAINING),
        "word id 0 (the most frequent word) read as a sentence end",
    ),
    m(
        "drivers.py",
        "scale = np.float32(1.0 / count)",
        "scale = np.float32(1.0)",
        (KERNELS,),
        "CBOW sums the context vectors instead of averaging",
    ),
    m(
        "drivers.py",
        "context = vectors[sentence[c]]\n                work[:] = 0.0\n"
        "                loss += head_step(state, context, sentence[pos], lr, work, rng)",
        "context = vectors[sentence[pos]]\n                work[:] = 0.0\n"
        "                loss += head_step(state, context, sentence[c], lr, work, rng)",
        (KERNELS,),
        "skip-gram input and target swapped (centre as input)",
    ),
    m(
        "drivers.py",
        "lr = lr_start + (lr_end - lr_start) * start / total\n"
        "        n, end = _read_sentence(ids, start, keep, rng, sentence)\n"
        "        for pos in range(n):\n"
        "            lo, hi = _reduced_window(rng, pos, n, window)\n"
        "            for c in range(lo, hi):",
        "lr = lr_start\n"
        "        n, end = _read_sentence(ids, start, keep, rng, sentence)\n"
        "        for pos in range(n):\n"
        "            lo, hi = _reduced_window(rng, pos, n, window)\n"
        "            for c in range(lo, hi):",
        (KERNELS, TRAINING),
        "skip-gram driver ignores lr_end (no decay inside a job)",
    ),
    # --- rng.py ---
    m(
        "rng.py",
        "(next_random(rng) >> np.uint64(11))",
        "(next_random(rng) >> np.uint64(10))",
        (RNG, KERNELS, SPARSE, VOCAB),
        "uniform() shifted one bit too little: draws in [0, 2)",
    ),
    m(
        "rng.py",
        "return x * np.uint64(2685821657736338717)",
        "return x",
        (RNG, KERNELS, SPARSE, VOCAB),
        "xorshift64 without the * multiplier (weak low bits feed % window)",
    ),
    # --- engines.py ---
    m(
        "engines.py",
        "lr = lr_start + (lr_end - lr_start) * start / max(n, 1)",
        "lr = lr_start",
        (KERNELS, TRAINING),
        "batched engine ignores lr_end (no decay inside a job)",
    ),
    m(
        "engines.py",
        "hidden /= weights.sum(axis=1, keepdims=True)",
        "hidden /= 1.0",
        (KERNELS,),
        "batched CBOW sums the context vectors instead of averaging",
    ),
    m(
        "engines.py",
        "self.ops.scatter_add(vectors, centres, -step.lr * step.grad_hidden)",
        "vectors[centres] += -step.lr * step.grad_hidden",
        (KERNELS, TRAINING, EXACT),
        "batched skip-gram scatter drops duplicate centre words (fancy-index +=)",
    ),
    m(
        "engines.py",
        "scales = xp.full(example.shape[0], -step.lr, dtype=vectors.dtype)",
        "scales = xp.full(example.shape[0], -lr, dtype=vectors.dtype)",
        (KERNELS, EXACT, TRAINING),
        "batched CBOW uses the requested rate, not the (capped) rate the head used",
    ),
    m(
        "engines.py",
        "self.model.head.reseed(seed + 1)",
        "self.model.head.reseed(seed)",
        (KERNELS, TRAINING),
        "head noise stream seeded like the window stream (correlated draws)",
    ),
    # --- heads/sparse.py ---
    m(
        "heads/sparse.py",
        "mask[:, 1:] = noise != words[:, None]",
        "mask[:, 1:] = 1.0",
        (SPARSE,),
        "batched NS keeps noise draws equal to the target",
    ),
    m(
        "heads/sparse.py",
        "labels = 1.0 - self._codes[words].astype(np.float32)",
        "labels = self._codes[words].astype(np.float32)",
        (SPARSE,),
        "batched HS label is the code bit, not 1 - bit",
    ),
    m(
        "heads/sparse.py",
        "grad_scores = grad_scores * mask\n",
        "",
        (SPARSE,),
        "batched logistic step: masked units still update",
    ),
    m(
        "heads/sparse.py",
        "self.ops.scatter_add(grad_hidden, example, grad_pairs)",
        "grad_hidden[example] += grad_pairs",
        (SPARSE,),
        "hidden gradient scatter drops duplicate examples",
    ),
    # --- heads/logistic_kernels.py ---
    m(
        "heads/logistic_kernels.py",
        "        if noise == target:\n            continue\n",
        "",
        (SPARSE,),
        "compiled NS trains a noise draw equal to the target as a negative",
    ),
    m(
        "heads/logistic_kernels.py",
        "        work[i] += g * weights[i]\n        weights[i] += g * hidden[i]",
        "        weights[i] += g * hidden[i]\n        work[i] += g * weights[i]",
        (SPARSE,),
        "hidden gradient taken from the already-updated output row",
    ),
    m(
        "heads/logistic_kernels.py",
        "label = 1.0 - state.codes[target, j]",
        "label = state.codes[target, j]",
        (SPARSE,),
        "compiled HS label is the code bit, not 1 - bit",
    ),
    m(
        "heads/logistic_kernels.py",
        "_GRID = (np.arange(SIGMOID_TABLE_SIZE) + 0.5)",
        "_GRID = np.arange(SIGMOID_TABLE_SIZE) + (0.0)",
        (SPARSE, KERNELS),
        "sigmoid table sampled at cell edges, not centres (half a cell off)",
    ),
    # --- heads/exact.py ---
    # --- heads/losses.py ---
    m(
        "heads/losses.py",
        "norm = q + vocab_size * constants.epsilon",
        "norm = q + constants.epsilon",
        (EXACT,),
        "spherical softmax normaliser misses the D factor on epsilon",
    ),
    m(
        "heads/losses.py",
        "return 1.0 - 2.0 * score, -2.0 + 0.0 * score, 0.0, 0.0",
        "return -2.0 * score, -2.0 + 0.0 * score, 0.0, 0.0",
        (EXACT,),
        "squared error loss misses the constant K (reported loss only)",
    ),
    m(
        "heads/base.py",
        "grad = exp * (count[:, None] / total)",
        "grad = exp / total",
        (EXACT,),
        "full softmax gradient ignores the number of targets K",
    ),
    m(
        "heads/exact.py",
        "self.capped_steps += used < lr",
        "self.capped_steps += used <= lr",
        (EXACT,),
        "every step counted as capped (< vs <=): spurious 'learning rate reduced' notices",
    ),
    # --- heads/factored_state.py ---
    m(
        "heads/factored_state.py",
        "self.condition_bound *= (1.0 + growth) / (1.0 - shrink)",
        "self.condition_bound *= (1.0 + growth) * (1.0 - shrink)",
        (EXACT,),
        "cond(U) bound shrinks instead of growing: ill-conditioned U never refolded early",
    ),
    m(
        "heads/factored_state.py",
        "            self._workspace = np.empty(needed, dtype=self.basis.dtype)\n"
        "            self.mirrored = False\n",
        "            self._workspace = np.empty(needed, dtype=self.basis.dtype)\n",
        (EXACT,),
        "a grown workspace is taken to hold the matrices' copy already",
    ),
    m(
        "heads/factored_state.py",
        "state.steps, state.refolds, state.condition_bound = int(steps), int(refolds), bound",
        "state.steps, state.refolds = int(steps), int(refolds)",
        (EXACT, API),
        "restore forgets the cond(U) bound (a resumed run diverges from the uninterrupted)",
    ),
    # --- heads/factored_kernel.py ---
    m(
        "heads/factored_kernel.py",
        "if shrink**4 > unit * (1.0 - shrink):",
        "if shrink**3 > unit * (1.0 - shrink):",
        (EXACT,),
        "Woodbury: Cholesky threshold shrink**3 instead of shrink**4",
        equivalent="shrink**3 > u(1 - s) holds whenever shrink**4 > u(1 - s) does (0 <= s < 1): "
        "the mutant only sends more steps to the exact Cholesky solve instead of a series that "
        "is already exact to rounding; results differ in rounding, speed only",
    ),
    m(
        "heads/factored_kernel.py",
        "if shrink**4 > unit * (1.0 - shrink):",
        "if shrink**8 > unit * (1.0 - shrink):",
        (EXACT,),
        "Woodbury 4-term series used where its error shrink**4 exceeds the unit roundoff",
    ),
    m(
        "heads/factored_kernel.py",
        "+ 2.0 * pair_products[b, 2 * m + a] * grad_q[b]",
        "+ 2.0 * pair_products[a, 2 * m + b] * grad_q[b]",
        (EXACT,),
        "E^T E cross term not transposed (Q update asymmetric)",
    ),
    m(
        "heads/factored_kernel.py",
        "if root[j] > smallest:",
        "if True:",
        (EXACT,),
        "always divides by root_j (zero for an example without targets)",
    ),
    m(
        "heads/factored_kernel.py",
        "state[a, b] += update[a, b] + update[b, a]",
        "state[a, b] += 2.0 * update[a, b]",
        (EXACT,),
        "Q update not symmetrised",
    ),
    # --- heads/adaptive.py ---
    m(
        "heads/adaptive.py",
        'return self.ops.xp.searchsorted(self._cutoffs, words, side="right")',
        'return self.ops.xp.searchsorted(self._cutoffs, words, side="left")',
        (ADAPTIVE,),
        "a word at a cutoff goes to the cluster before it (off-by-one cluster index)",
    ),
    m(
        "heads/adaptive.py",
        "head_index = xp.where(cluster == 0, words, shortlist + cluster - 1)",
        "head_index = xp.where(cluster == 0, words, shortlist + cluster)",
        (ADAPTIVE,),
        "tail i scored by the head's token of tail i + 1 (off-by-one cluster token)",
    ),
    m(
        "heads/adaptive.py",
        "grad_hidden[rows] += ops.gemm(grad_reduced, projection)",
        "grad_hidden[rows] = ops.gemm(grad_reduced, projection)",
        (ADAPTIVE,),
        "a tail's gradient replaces the head's instead of adding to it (a dropped term)",
    ),
    # --- heads/aop.py ---
    m(
        "heads/aop.py",
        "order = xp.argsort(-norms[holding])",
        "order = xp.argsort(norms[holding])",
        (AOP,),
        "top-k keeps the K smallest outer products",
    ),
    # --- heads/lsh_kernels.py and heads/lsh.py ---
    m(
        "heads/lsh_kernels.py",
        "negatives[j] = -1 if word == target else word",
        "negatives[j] = word",
        (LSH,),
        "a topped-up negative may be the target itself",
    ),
    m(
        "heads/lsh_kernels.py",
        "                if word != target and filled < k:",
        "                if filled < k:",
        (LSH,),
        "a bucket's target taken as its own negative when the union is small",
    ),
    m(
        "heads/lsh.py",
        "if not self._tables_in_use or rebuild <= self._rebuild:",
        "if not self._tables_in_use or rebuild < self._rebuild:",
        (LSH,),
        "tables rebuilt at every job instead of once per lsh_rehash words",
        equivalent="the check is made twice (double-checked locking): the one under the lock, "
        "rebuild > self._rebuild, still refuses a second rebuild of a window; only the lock "
        "is taken at every job (tests/test_lsh.py pins the rebuilds a run makes)",
    ),
    # --- distributed.py and ray_cluster.py ---
    m(
        "distributed.py",
        "total *= (1.0 / holders[union]).astype(master.dtype)[:, None]",
        "total *= master.dtype.type(1.0 / len(deltas))",
        (DISTRIBUTED,),
        "the merge averages over all workers, not over those that changed the row",
    ),
    m(
        "distributed.py",
        "return training.job_rates(settings, start, end, plan.total_words, plan.active_workers)",
        "return training.job_rates(settings, start, end, plan.total_words)",
        (DISTRIBUTED,),
        "workers train at the plain rate, not times the round's active workers",
    ),
    m(
        "ray_cluster.py",
        "if needed > LOCAL_OVERSUBSCRIPTION * cpus:",
        "if needed > LOCAL_OVERSUBSCRIPTION * cpus * cpus:",
        (RELIABILITY,),
        "a local Ray's thread check scales with the square of the CPUs",
    ),
    # --- backend.py ---
    m(
        "backend.py",
        "        self.xp.add.at(target, indices, values)",
        "        target[indices] += values",
        (BACKEND,),
        "the generic backend's scatter drops repeated indices",
    ),
    # --- heads/losses.py: the Taylor softmax's and the Z-loss's sum terms ---
    m(
        "heads/losses.py",
        "return count * np.log(norm), 0.5 * count / norm, count / norm",
        "return count * np.log(norm), 0.5 * count / norm, 0.0 * count",
        (EXACT,),
        "Taylor softmax without dL/ds (the normaliser's sum term dropped)",
    ),
    m(
        "heads/losses.py",
        "grad_s = (first - mean * second / deviation) / (vocab_size * deviation)",
        "grad_s = first / (vocab_size * deviation)",
        (EXACT,),
        "Z-loss dL/ds without the deviation's share of the mean",
    ),
    # --- the reliability mechanisms ---
    m(
        "heads/__init__.py",
        "if name in given and not takes(kind, settings):",
        "if name in given and takes(kind, settings) is None:",
        (RELIABILITY,),
        "an option another head takes is accepted and ignored",
    ),
    m(
        "compression.py",
        "return name[: -len(Path(name).suffix)] if opener(name) else name",
        "return name",
        (RELIABILITY,),
        "vectors.bin.gz written and read as text",
    ),
    m(
        "memory.py",
        "total = needed * (1 + TEMPORARY_SHARE) + HEADROOM_BYTES",
        "total = needed",
        (RELIABILITY,),
        "the address-space check counts the arrays only (a compiled library then aborts)",
    ),
    m(
        "atomic.py",
        "            if stop_requested():",
        "            if False:",
        (RELIABILITY,),
        "a FIFO output without a reader ignores stop signals",
    ),
    # --- training.py ---
    m(
        "training.py",
        "return settings_lr - (settings_lr - min_lr) * min(max(progress, 0.0), 1.0)",
        "return settings_lr * (1.0 - min(max(progress, 0.0), 1.0))",
        (TRAINING,),
        "learning rate decays to 0, ignoring min_lr",
    ),
    m(
        "training.py",
        "self.total = encoded.words * self.settings.epochs",
        "self.total = encoded.words",
        (TRAINING,),
        "learning rate schedule restarts every epoch",
    ),
    m(
        "training.py",
        "return (seed * 0x9E3779B97F4A7C15 + position) % 2**64",
        "return (seed + position) % 2**64",
        (TRAINING, API),
        "job seed = seed + position: seed s at position p+1 repeats seed s+1 at p",
    ),
    m(
        "training.py",
        "self.position = epoch * encoded.words + skip",
        "self.position = epoch * encoded.words",
        (API, TRAINING),
        "a run resumed inside an epoch restarts the epoch's schedule and seeds",
    ),
    m(
        "training.py",
        "going_on = callback(report) is not False and going_on",
        "going_on = going_on and callback(report) is not False",
        (TRAINING, API),
        "callbacks after one that stops are not called",
    ),
    # --- model.py ---
    m(
        "model.py",
        "            vectors *= np.float32(settings.init_norm * math.sqrt(3.0 / settings.dim))\n",
        "",
        (MODEL, API),
        "initial vectors uniform in [-1, 1) instead of [-1/d, 1/d)",
    ),
    m(
        "model.py",
        "self.words_done > self.epoch_words * self.settings.epochs",
        "self.words_done >= self.epoch_words * self.settings.epochs",
        (MODEL, API, TRAINING),
        "a finished model cannot be resumed with the same --epochs (> vs >=)",
    ),
    m(
        "model.py",
        "if self.epoch_words and epoch_words != self.epoch_words:",
        "if False:",
        (API,),
        "resume on another corpus accepted",
    ),
    m(
        "model.py",
        "if not integer and not np.isfinite(array).all():",
        "if False:",
        (MODEL,),
        "model-file check for non-finite arrays removed",
    ),
    # --- export.py ---
    m(
        "export.py",
        'out.write(f"{len(words)} {vectors.shape[1]}\\n".encode())',
        'out.write(f"{vectors.shape[1]} {len(words)}\\n".encode())',
        (EXPORT,),
        "word2vec header fields swapped",
    ),
    m(
        "export.py",
        'little_endian = vectors.astype("<f4", copy=False)',
        "little_endian = vectors",
        (EXPORT,),
        "binary output in native byte order",
        equivalent="vectors is already float32 (ascontiguousarray above) and every host "
        "this runs on is little-endian: '<f4' is the native dtype, astype(copy=False) is a no-op",
    ),
    m(
        "export.py",
        'out.write(word.encode() + b" " + row.tobytes() + b"\\n")',
        'out.write(word.encode() + b" " + row.tobytes())',
        (EXPORT,),
        "binary output without word2vec's newline after each vector",
    ),
    # --- atomic.py ---
    m(
        "atomic.py",
        "            os.fsync(out.fileno())\n",
        "",
        (EXPORT,),
        "no fsync before the rename (a crash may leave an empty file)",
    ),
    m(
        "atomic.py",
        "        _keep_mode(temporary, existing)\n",
        "",
        (EXPORT,),
        "outputs keep mkstemp's 0600 mode",
    ),
    m(
        "atomic.py",
        "return Path(os.path.realpath(path)), existing",
        "return Path(path), existing",
        (EXPORT,),
        "a symbolic link is replaced by a regular file",
    ),
    m(
        "atomic.py",
        "    except OSError as exc:\n        Path(temporary).unlink(missing_ok=True)\n"
        '        raise OutputError(f"cannot write {path}',
        '    except OSError as exc:\n        raise OutputError(f"cannot write {path}',
        (EXPORT,),
        "a failed write leaves its temporary file behind",
    ),
    # --- cli.py ---
    m(
        "cli.py",
        "    check_writable(partial)\n",
        "",
        (CLI,),
        "partial-model path not checked before training",
    ),
    m(
        "cli.py",
        'path.with_name(f"{path.name[:200]}.partial.npz")',
        'path.with_name(f"{path.name}.partial.npz")',
        (CLI,),
        "partial model name too long for long outputs",
    ),
    m(
        "cli.py",
        "    if late.is_set():\n        print(",
        "    if False:\n        print(",
        (CLI,),
        "a signal while writing outputs exits 0",
    ),
    m(
        "cli.py",
        "if getattr(args, name, None) is not None]",
        "if getattr(args, name, None)]",
        (CLI,),
        "options given as 0 (--seed 0, --batch-size 0, --sample 0) silently dropped",
    ),
    # --- settings.py ---
    m(
        "settings.py",
        "if not 0 <= self.min_lr <= self.lr:",
        "if not 0 <= self.min_lr:",
        (API,),
        "--min-lr above --lr accepted",
    ),
    m(
        "settings.py",
        '0.75, "noise distribution count**x"',
        '1.0, "noise distribution count**x"',
        (API, VOCAB),
        "wrong default noise exponent",
    ),
    # --- api.py ---
    m(
        "model.py",
        "    if not is_model_file(path):\n        raise ModelFileError(\n",
        "    if False:\n        raise ModelFileError(\n",
        (API,),
        "resume from word2vec vectors not refused with the documented message",
    ),
    m(
        "api.py",
        "    if bad_bytes:\n        log.warning",
        "    if False:\n        log.warning",
        (API, CORPUS),
        "replaced undecodable bytes not reported",
    ),
    # --- embeddings.py ---
    m(
        "embeddings.py",
        "query = (unit[rows[1]] + unit[rows[2]] - unit[rows[0]]) / 3.0",
        "query = unit[rows[1]] + unit[rows[2]] - unit[rows[0]]",
        (API,),
        "analogy query not divided by 3",
        equivalent="_nearest divides the query by its norm: a positive scale changes only "
        "the last bits of the normalised query, never the ranking beyond exact ties",
    ),
    m(
        "embeddings.py",
        "count = min(n + len(exclude), len(self.words))",
        "count = min(n, len(self.words))",
        (API,),
        "excluded words take neighbour slots: fewer than n answers",
    ),
    m(
        "embeddings.py",
        "self.vectors / np.maximum(norms, np.finfo(np.float32).tiny)",
        "self.vectors / norms",
        (API,),
        "a zero vector makes every similarity NaN",
    ),
]


@contextmanager
def worktree() -> Iterator[Path]:
    """A detached worktree of HEAD in a temporary directory, removed however we leave."""
    base = Path(tempfile.mkdtemp(prefix="embedtrain-mutation-"))
    tree = base / "tree"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree), "HEAD"],
        check=True,
    )
    try:
        yield tree
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False
        )
        shutil.rmtree(base, ignore_errors=True)
        subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], check=False)


def check_snippets(tree: Path, mutants: list[Mutant]) -> None:
    """Every snippet must occur exactly once at HEAD: a stale list must fail, not pass."""
    errors = []
    for number, mutant in enumerate(mutants, 1):
        path = tree / mutant.module
        if not path.is_file():
            errors.append(f"#{number} {mutant.module}: no such file")
            continue
        found = path.read_text(encoding="utf-8").count(mutant.old)
        if found != 1:
            errors.append(f"#{number} {mutant.module}: snippet found {found} times: {mutant.old!r}")
        if mutant.old == mutant.new:
            errors.append(f"#{number} {mutant.module}: the replacement changes nothing")
    if errors:
        sys.exit("mutation list does not match HEAD:\n  " + "\n  ".join(errors))


def run_tests(tree: Path, tests: list[str], cache: Path) -> tuple[bool, bool, str]:
    """(passed, timed out, output tail) of the tests in ``tree`` with an empty Numba cache."""
    env = {**os.environ, "PYTHONPATH": str(tree), "NUMBA_CACHE_DIR": str(cache)}
    env.pop("PYTEST_ADDOPTS", None)
    process = subprocess.Popen(
        [*PYTEST, *tests],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so a timeout ends the tests' own subprocesses too
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return False, True, output[-2000:]
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return process.returncode == 0, False, output[-2000:]


def summary(results: list[tuple[Mutant, str]]) -> str:
    """Per-module killed / survived / equivalent, and the score."""
    rows: dict[str, Counter[str]] = {}
    for mutant, outcome in results:
        rows.setdefault(mutant.module, Counter())[outcome] += 1
    lines = [f"{'module':36} {'killed':>7} {'survived':>9} {'equivalent':>11}"]
    total: Counter[str] = Counter()
    for module in sorted(rows):
        counts = rows[module]
        total += counts
        lines.append(
            f"{module:36} {counts['killed']:7} {counts['survived']:9} {counts['equivalent']:11}"
        )
    lines.append(f"{'total':36} {total['killed']:7} {total['survived']:9} {total['equivalent']:11}")
    scored = total["killed"] + total["survived"]
    score = total["killed"] / scored if scored else float("nan")
    lines.append(f"score: killed / (total - equivalent) = {total['killed']}/{scored} = {score:.1%}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        metavar="SUBSTRING",
        help="run only mutants whose module or description contains it (or one of several, "
        "comma-separated)",
    )
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args()
    wanted = args.only.split(",") if args.only else []
    mutants = [
        mutant
        for mutant in MUTANTS
        if not wanted or any(part in mutant.module or part in mutant.description for part in wanted)
    ]
    if not mutants:
        sys.exit(f"no mutant matches {args.only!r}")
    started = time.perf_counter()
    with worktree() as tree:
        check_snippets(tree, mutants)
        if args.list:
            for number, mutant in enumerate(mutants, 1):
                tag = " [equivalent]" if mutant.equivalent else ""
                print(f"{number:3} {mutant.module:34} {mutant.description}{tag}")
            print(f"{len(mutants)} mutants, snippets checked against HEAD")
            return 0
        active = [mutant for mutant in mutants if not mutant.equivalent]
        baseline = sorted({test for mutant in active for test in mutant.tests})
        print(f"baseline: {' '.join(baseline)}", flush=True)
        ok, timed_out, output = run_tests(tree, baseline, tree.parent / "numba-baseline")
        if not ok:
            print(output, file=sys.stderr)
            sys.exit("the unmutated worktree fails its tests: a mutation run would be meaningless")
        print(f"baseline passes ({time.perf_counter() - started:.0f} s)", flush=True)
        results: list[tuple[Mutant, str]] = []
        for number, mutant in enumerate(mutants, 1):
            if mutant.equivalent:
                results.append((mutant, "equivalent"))
                print(f"{number:3} equivalent {mutant.module}: {mutant.description}", flush=True)
                continue
            path = tree / mutant.module
            original = path.read_text(encoding="utf-8")
            path.write_text(original.replace(mutant.old, mutant.new, 1), encoding="utf-8")
            begun = time.perf_counter()
            try:
                passed, timed_out, _ = run_tests(
                    tree, list(mutant.tests), tree.parent / f"numba-{number}"
                )
            finally:
                path.write_text(original, encoding="utf-8")
            outcome = "survived" if passed else "killed"
            note = " (timeout)" if timed_out else ""
            results.append((mutant, outcome))
            print(
                f"{number:3} {outcome}{note} {mutant.module}: {mutant.description} "
                f"({time.perf_counter() - begun:.0f} s)",
                flush=True,
            )
    print()
    print(summary(results))
    print(f"runtime {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the worktree is already removed by its context manager
        sys.exit(130)
