"""LSH adaptive negative sampling (Daghaghi et al., ICML 2021; ``--head lsh``).

Negative sampling whose noise words come from locality-sensitive hash tables over the
output vectors instead of word2vec's static count**0.75 table, so the negatives are words
the model currently scores high: with ``lsh_mode`` embedding the query is the hidden vector
(negatives adapt to the input), with label the target's bucket (words resembling the
target). L tables of 2**K buckets, each holding at most :data:`BUCKET_CAPACITY` ids;
SimHash or DWTA hashes. Negatives are drawn from the union of the query's L buckets, the
target excluded, topped up from count**ns_exponent when the buckets hold too few words
(the share is reported after each epoch).

What runs where:

- compiled engine (CPU, Numba, Hogwild threads as ``ns``): hashing, bucket reads and the
  update in :mod:`embedtrain.heads.lsh_kernels`; the tables are rebuilt from the current
  output vectors at the first job boundary after every ``lsh_rehash`` words (double
  buffered, so the other threads keep training on complete tables) and the hash functions
  redrawn every :data:`REBUILDS_PER_HASH_DRAW` rebuilds;
- batched engine (NumPy or CuPy): hash tables fit a GPU badly (scatter-heavy rebuilds,
  ragged buckets), so a brute-force stand-in draws a shared pool of :data:`POOL_SIZE`
  candidates from count**ns_exponent per minibatch, scores it against every query with one
  product and draws each example's negatives from the pool with SimHash's retrieval
  probability 1 - (1 - (1 - theta/pi)**K)**L (for either hash family); the tables are not
  used there.

The active tables (with the rebuild they came from) are saved with the model, and the
hash functions are redrawn from the seed, so a resumed run continues exactly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from embedtrain.backend import Ops
from embedtrain.errors import SettingsError
from embedtrain.heads.lsh_kernels import (
    DWTA,
    EMBEDDING,
    LABEL,
    SIMHASH,
    LshState,
    build_tables,
    lsh_negative_sampling_step,
)
from embedtrain.heads.sparse import NegativeSampling, target_and_noise_units
from embedtrain.vocab import Vocabulary

if TYPE_CHECKING:
    from embedtrain.settings import Settings

log = logging.getLogger("embedtrain")

#: Ids a bucket holds (the official code's BUCKETSIZE); a bucket keeps a uniform sample of
#: its words (keeping the most frequent made the negatives the vocabulary's most frequent
#: words, trivially easy: 2.2% analogies after one bench17m epoch against ns's 10.4%).
BUCKET_CAPACITY = 128
#: Seed stream of the word order that samples each bucket at a rebuild.
BUCKET_SAMPLE_STREAM = 0xB0C
#: Table rebuilds between two draws of the hash functions (the official code: 20).
REBUILDS_PER_HASH_DRAW = 10
#: Candidates per minibatch of the batched stand-in.
POOL_SIZE = 512


def hash_functions(
    seed: int, generation: int, n_hashes: int, dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """SimHash hyperplanes ``(n_hashes, dim)`` and DWTA coordinate pairs ``(n_hashes, 2)``
    (two distinct coordinates) of one generation, drawn from the seed."""
    rng = np.random.default_rng([seed, generation])
    planes = rng.standard_normal((n_hashes, dim)).astype(np.float32)
    first = rng.integers(dim, size=n_hashes)
    second = (first + 1 + rng.integers(max(dim - 1, 1), size=n_hashes)) % dim
    return planes, np.stack([first, second], axis=1).astype(np.int32)


def retrieval_probability(cosine: Any, bits: int, tables: int, xp: Any = np) -> Any:
    """SimHash's chance that a word at ``cosine`` to the query shares one of its L buckets."""
    single = 1.0 - xp.arccos(xp.clip(cosine, -1.0, 1.0)) / np.pi
    return 1.0 - (1.0 - single**bits) ** tables


class LshNegativeSampling(NegativeSampling):
    """Negative sampling with negatives drawn from LSH buckets of the output vectors."""

    name = "lsh"
    merges_by_row = False  # its hash tables follow the output rows: no row-wise merge
    # Its negatives depend on each example's input (the hash of its vector or target), so
    # a window has no one draw to share.
    has_shared_step = False
    integer_parameters: ClassVar[tuple[str, ...]] = (
        "lsh_tables",
        "lsh_sizes",
        "lsh_codes",
        "lsh_rebuild",
    )

    def __init__(
        self,
        vocab: Vocabulary,
        settings: Settings,
        ops: Ops,
        seed: int,
        parameters: dict[str, np.ndarray] | None = None,
    ) -> None:
        super().__init__(vocab, settings, ops, seed, parameters)
        n_tables, bits, dim = settings.lsh_tables, settings.lsh_bits, settings.dim
        buckets, size = 2**bits, len(vocab)
        self.settings = settings
        self._hash_seed = seed
        self._noise_probability = vocab.noise_distribution(settings.ns_exponent)
        self._planes = np.zeros((2, n_tables * bits, dim), dtype=np.float32)
        self._pairs = np.zeros((2, n_tables * bits, 2), dtype=np.int32)
        self._tables = np.zeros((2, n_tables, buckets, BUCKET_CAPACITY), dtype=np.int32)
        self._sizes = np.zeros((2, n_tables, buckets), dtype=np.int32)
        self._codes = np.zeros((2, n_tables, size), dtype=np.int32)
        self._kept = np.zeros((2, n_tables, size), dtype=np.uint8)
        self._active = np.zeros(1, dtype=np.int64)
        self._counts = ops.xp.zeros(2, dtype=np.int64)  # negatives drawn, topped up
        self._rebuild = -1  # the rebuild (words // lsh_rehash) the active tables come from
        self._lock = threading.Lock()
        self._tables_in_use = False  # only the compiled step reads the tables
        if parameters is not None:
            self._restore(parameters)
        table_bytes = sum(
            a.nbytes for a in (self._tables, self._sizes, self._codes, self._kept, self._planes)
        )
        log.info(
            "lsh head: %d tables x %d buckets x %d ids, two buffers: %.1f MiB",
            n_tables,
            buckets,
            BUCKET_CAPACITY,
            table_bytes / 2**20,
        )

    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        super().check_settings(settings)
        if settings.lsh_hash == "dwta" and settings.dim < 2:
            raise SettingsError("--lsh-hash dwta needs --dim >= 2 (it compares coordinate pairs)")

    @classmethod
    def parameter_shapes(cls, vocab_size: int, settings: Settings) -> dict[str, tuple[int, ...]]:
        """The output vectors and the active tables: ids, sizes, every word's bucket and
        which rebuild they come from (``-1``: none yet)."""
        n_tables, buckets = settings.lsh_tables, 2**settings.lsh_bits
        return {
            "output": (vocab_size, settings.dim),
            "lsh_tables": (n_tables, buckets, BUCKET_CAPACITY),
            "lsh_sizes": (n_tables, buckets),
            "lsh_codes": (n_tables, vocab_size),
            "lsh_rebuild": (1,),
        }

    @classmethod
    def parameter_problem(
        cls, parameters: dict[str, np.ndarray], vocab_size: int, settings: Settings
    ) -> str | None:
        """Saved tables must hold word ids, sizes within the capacity, buckets within 2**K,
        and each held word must sit in the bucket its code names."""
        tables, sizes = parameters["lsh_tables"], parameters["lsh_sizes"]
        codes = parameters["lsh_codes"]
        if parameters["lsh_rebuild"][0] < -1:
            return "lsh_rebuild is below -1"
        if sizes.min(initial=0) < 0 or sizes.max(initial=0) > BUCKET_CAPACITY:
            return f"lsh_sizes outside 0..{BUCKET_CAPACITY}"
        if codes.min(initial=0) < 0 or codes.max(initial=0) >= 2**settings.lsh_bits:
            return "lsh_codes name buckets that do not exist"
        table, bucket, slot = np.nonzero(np.arange(BUCKET_CAPACITY) < sizes[:, :, None])
        held = tables[table, bucket, slot]
        if held.min(initial=0) < 0 or held.max(initial=0) >= vocab_size:
            return "lsh_tables hold ids outside the vocabulary"
        if (codes[table, held] != bucket).any():
            return "lsh_tables disagree with lsh_codes"
        return None

    def _restore(self, parameters: dict[str, np.ndarray]) -> None:
        """Load the saved tables into buffer 0 with the hash functions they were built with."""
        self._tables[0] = parameters["lsh_tables"]
        self._sizes[0] = parameters["lsh_sizes"]
        self._codes[0] = parameters["lsh_codes"]
        self._rebuild = int(parameters["lsh_rebuild"][0])
        table, bucket, slot = np.nonzero(np.arange(BUCKET_CAPACITY) < self._sizes[0][:, :, None])
        self._kept[0, table, self._tables[0, table, bucket, slot]] = 1
        if self._rebuild >= 0:
            self._draw_hash_functions(0, self._rebuild)

    def _draw_hash_functions(self, buffer: int, rebuild: int) -> None:
        planes, pairs = hash_functions(
            self._hash_seed,
            rebuild // REBUILDS_PER_HASH_DRAW,
            self._planes.shape[1],
            self.dim,
        )
        self._planes[buffer] = planes
        self._pairs[buffer] = pairs

    def start_job(self, position: int) -> None:
        """Rebuild the tables at the first job past each ``lsh_rehash`` words."""
        rebuild = position // self.settings.lsh_rehash
        if not self._tables_in_use or rebuild <= self._rebuild:
            return
        with self._lock:
            if rebuild > self._rebuild:
                self.rebuild_tables(rebuild)

    def rebuild_tables(self, rebuild: int) -> None:
        """Hash the current output vectors into the idle buffer, then make it the active one."""
        idle = 1 - int(self._active[0])
        self._draw_hash_functions(idle, rebuild)
        build_tables(
            self.output,
            np.random.default_rng([self._hash_seed, rebuild, BUCKET_SAMPLE_STREAM]).permutation(
                self.output.shape[0]
            ),
            self._planes,
            self._pairs,
            SIMHASH if self.settings.lsh_hash == "simhash" else DWTA,
            self.settings.lsh_bits,
            idle,
            self._tables,
            self._sizes,
            self._codes,
            self._kept,
        )
        self._active[0] = idle
        self._rebuild = rebuild

    def compiled_step(self) -> tuple[Callable, LshState]:
        self._tables_in_use = True
        s = self.settings
        state = LshState(
            output=self.output,
            alias_probability=self._alias_probability,
            alias_index=self._alias_index,
            noise_probability=self._noise_probability,
            negative=self.negative,
            mode=EMBEDDING if s.lsh_mode == "embedding" else LABEL,
            hash_kind=SIMHASH if s.lsh_hash == "simhash" else DWTA,
            bits=s.lsh_bits,
            correct=int(s.lsh_correction == "logq"),
            planes=self._planes,
            pairs=self._pairs,
            tables=self._tables,
            sizes=self._sizes,
            codes=self._codes,
            kept=self._kept,
            active=self._active,
            counts=self._counts,
        )
        return lsh_negative_sampling_step, state

    def parameters(self) -> dict[str, np.ndarray]:
        active = int(self._active[0])
        return {
            "output": self.ops.to_host(self.output),
            "lsh_tables": self._tables[active].copy(),
            "lsh_sizes": self._sizes[active].copy(),
            "lsh_codes": self._codes[active].copy(),
            "lsh_rebuild": np.array([self._rebuild], dtype=np.int64),
        }

    def check_finite(self) -> bool:
        return bool(self.ops.xp.isfinite(self.output).all())

    def epoch_summary(self) -> str:
        """The share of negatives topped up from the noise distribution since the last
        call (approximate on several threads: the tallies are Hogwild too)."""
        drawn, topped = (int(c) for c in self.ops.to_host(self._counts))
        self._counts[:] = 0
        if not drawn:
            return ""
        return (
            f"lsh: {topped / drawn:.1%} of {drawn:,} negatives topped up from "
            f"count^{self.settings.ns_exponent} (the query's buckets held too few words)"
        )

    def _pair_units(self, words: Any, pair_hidden: Any) -> tuple[Any, Any, Any, Any]:
        """The batched stand-in: negatives from a shared count**ns_exponent pool, each drawn
        with its SimHash retrieval probability for the query (see the module docstring);
        a row whose pool holds nothing retrievable is topped up uniformly from the pool."""
        xp = self.ops.xp
        s = self.settings
        pool = self.draw_noise((POOL_SIZE,)).astype(np.int64)
        queries = pair_hidden if s.lsh_mode == "embedding" else self.output[words]
        candidates = self.output[pool]
        query_norms = xp.linalg.norm(queries, axis=1, keepdims=True) + 1e-12
        candidate_norms = xp.linalg.norm(candidates, axis=1) + 1e-12
        cosine = (queries / query_norms) @ (candidates / candidate_norms[:, None]).T
        other = pool[None, :] != words[:, None]
        weights = retrieval_probability(cosine, s.lsh_bits, s.lsh_tables, xp) * other
        empty = weights.sum(axis=1) <= 0
        weights = xp.where(empty[:, None], other.astype(weights.dtype), weights)
        cumulative = xp.cumsum(weights, axis=1)
        total = cumulative[:, -1]
        pairs = words.shape[0]
        draws = self.random.random_sample((pairs, self.negative)) * total[:, None]
        choice = (cumulative[:, None, :] <= draws[:, :, None]).sum(axis=2)
        choice = xp.minimum(choice, POOL_SIZE - 1)
        noise = pool[choice]
        self._counts += xp.stack(
            [xp.asarray(pairs * self.negative), empty.sum() * self.negative]
        ).astype(np.int64)
        rows, labels, mask = target_and_noise_units(xp, words, noise)
        offsets = None
        if s.lsh_correction == "logq":
            chosen = xp.take_along_axis(weights, choice, axis=1)
            probability = xp.maximum(chosen / xp.maximum(total[:, None], 1e-300), 1e-12)
            offsets = xp.zeros(rows.shape, dtype=np.float64)
            offsets[:, 1:] = xp.log(self.negative * probability)
        return rows, labels, mask, offsets
