"""Approximate outer products with memory (Mem-AOP-GD; Hernandez, Rini & Duman 2021) for
the weight gradients of the dense heads.

A dense layer's weight update over a minibatch is a sum of outer products, one per
example: dW = lr * sum_i g_i x_i^T (g = dL/d output, x = the layer's input). Mem-AOP-GD
applies only K of them, chosen by a policy, and keeps the rest in memory so that what is
left out now is added back later. Three memories (``--aop-memory``):

- ``factors``, the authors' code: one pair of factor rows per minibatch slot. The step
  forms a = mem_a + sqrt(lr) x and b = mem_b + sqrt(lr) g per slot, applies
  sum_{i in S} b_i a_i^T and keeps the other rows (decay 1). A row kept for several steps
  sums its factors, so its product gains cross terms (mem_a + x)(mem_b + g)^T that no
  exact gradient has;
- ``exact``: the skipped products themselves, summed into a residual of the weight's
  shape that the next step applies in full: every product lands, at most one step late.
  Forming the skipped products is the product AOP saves, so this costs as much as the
  exact update: a reference that separates the effect of the delay from the cross terms;
- ``none``: plain AOP, the skipped products are dropped.

Policies (``--aop-policy``), over the slots that hold a product (p_i = (|a_i| |b_i|)^2
normalised, the squared norm product of the authors' code; no 1/(K p_i) rescaling):
``topk`` the K largest p_i, ``weighted`` K drawn without replacement with probability p_i,
``random`` K drawn uniformly. Where at most K slots hold a product, all are applied.

Only the weight-gradient product shrinks (K instead of m rows); the gradient passed back
to the hidden vectors stays exact, as in the paper. Everything here is array operations
on the backend, so it runs on NumPy and CuPy alike.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from embedtrain.backend import Ops

if TYPE_CHECKING:
    from embedtrain.settings import Settings


def aop_applies(settings: Settings, batch_size: int) -> bool:
    """Whether a head with minibatches of ``batch_size`` approximates its weight updates:
    ``aop_k`` 0 or at least the batch size means the exact update (bit for bit)."""
    return 0 < settings.aop_k < batch_size


class ApproximateOuterProduct:
    """The Mem-AOP-GD update of one weight matrix W (``n_out x n_in``) for minibatches of
    at most ``slots`` examples, and its memory (saved with the model)."""

    def __init__(
        self,
        ops: Ops,
        shape: tuple[int, int],
        slots: int,
        keep: int,
        policy: str,
        memory: str,
        dtype: Any,
    ) -> None:
        self.ops = ops
        self.keep = keep
        self.policy = policy
        self.memory = memory
        self.random = ops.random_state(0)
        xp = ops.xp
        self.state: dict[str, Any] = {
            name: xp.zeros(part, dtype=dtype)
            for name, part in self.state_shapes(shape, slots, memory).items()
        }
        self.left_mass = xp.zeros((), dtype=np.float64)
        self.total_mass = xp.zeros((), dtype=np.float64)

    @staticmethod
    def state_shapes(shape: tuple[int, int], slots: int, memory: str) -> dict[str, tuple[int, ...]]:
        """The shape of each memory array for ``memory`` (what :meth:`state` holds)."""
        n_out, n_in = shape
        if memory == "factors":
            return {"memory_in": (slots, n_in), "memory_out": (slots, n_out)}
        if memory == "exact":
            return {"residual": shape}
        return {}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Take saved memory arrays (shapes checked by the model loader)."""
        for name, array in state.items():
            self.state[name] = self.ops.asarray(array, dtype=self.state[name].dtype)

    def reseed(self, seed: int) -> None:
        """Seed the weighted and random policies' draws for the next job."""
        self.random = self.ops.random_state(seed)

    def apply(self, weights: Any, inputs: Any, grads: Any, slots: Any, lr: float) -> None:
        """W -= the approximate lr * grads^T inputs, in place. Row j of ``inputs`` (x) and
        ``grads`` (g) is the example in minibatch slot ``slots[j]`` (distinct slots)."""
        xp, ops = self.ops.xp, self.ops
        if self.memory == "factors":
            root = weights.dtype.type(math.sqrt(lr))
            factor_in, factor_out = self.state["memory_in"], self.state["memory_out"]
            factor_in[slots] += root * inputs
            factor_out[slots] += root * grads
            scale = 1.0
        else:  # the rows as given, lr applied to the K chosen ones only (one pass less)
            factor_in, factor_out, scale = inputs, grads, lr
        norms = xp.linalg.norm(factor_in, axis=1) * xp.linalg.norm(factor_out, axis=1)
        norms = norms.astype(np.float64)
        chosen = self._select(norms)
        ops.gemm(factor_out[chosen].T, factor_in[chosen], out=weights, alpha=-scale)
        total = norms.sum() * scale
        self.left_mass += total - norms[chosen].sum() * scale
        self.total_mass += total
        if self.memory == "factors":
            factor_in[chosen] = 0
            factor_out[chosen] = 0
        elif self.memory == "exact":
            residual = self.state["residual"]
            weights -= residual
            skipped = xp.ones(norms.shape[0], dtype=bool)
            skipped[chosen] = False
            residual[...] = ops.gemm(factor_out[skipped].T, factor_in[skipped], alpha=scale)

    def _select(self, norms: Any) -> Any:
        """Indices of the slots whose products are applied (see the module docstring)."""
        xp = self.ops.xp
        holding = xp.nonzero(norms > 0)[0]
        if holding.shape[0] <= self.keep:
            return holding
        if self.policy == "topk":
            order = xp.argsort(-norms[holding])
            return holding[order[: self.keep]]
        if self.policy == "weighted":
            weights = norms[holding] ** 2
            keys = xp.log(self.random.random_sample(holding.shape[0])) / (weights / weights.sum())
            return holding[xp.argsort(-keys)[: self.keep]]
        return holding[self.random.permutation(holding.shape[0])[: self.keep]]

    def memory_share(self) -> float:
        """The share of the outer products' norm (sum of |a_i| |b_i|) not applied at their
        step since the last call: left in memory, or dropped without one."""
        share = float(self.left_mass) / max(float(self.total_mass), 1e-300)
        self.left_mass[...] = 0
        self.total_mass[...] = 0
        return share


class DenseUpdates:
    """The weight updates of a dense head's matrices, decided once from the settings: the
    exact W -= lr G^T X (one GEMM each) or, where :func:`aop_applies`, Mem-AOP-GD with one
    memory per matrix, saved with the head's parameters as ``aop.<matrix>.<array>``."""

    def __init__(
        self,
        ops: Ops,
        settings: Settings,
        batch_size: int,
        shapes: dict[str, tuple[int, int]],
        dtype: Any,
        parameters: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.ops = ops
        self.settings = settings
        self.layers: dict[str, ApproximateOuterProduct] = {}
        if aop_applies(settings, batch_size):
            for name, shape in shapes.items():
                self.layers[name] = ApproximateOuterProduct(
                    ops,
                    shape,
                    batch_size,
                    settings.aop_k,
                    settings.aop_policy,
                    settings.aop_memory,
                    dtype,
                )
        if parameters is not None:
            for name, layer in self.layers.items():
                prefix = f"aop.{name}."
                layer.restore(
                    {k[len(prefix) :]: v for k, v in parameters.items() if k.startswith(prefix)}
                )

    @staticmethod
    def state_shapes(
        settings: Settings, batch_size: int, shapes: dict[str, tuple[int, int]]
    ) -> dict[str, tuple[int, ...]]:
        """The shapes of the saved memory arrays for weight matrices of ``shapes``."""
        if not aop_applies(settings, batch_size):
            return {}
        return {
            f"aop.{name}.{part}": part_shape
            for name, shape in shapes.items()
            for part, part_shape in ApproximateOuterProduct.state_shapes(
                shape, batch_size, settings.aop_memory
            ).items()
        }

    def apply(
        self, name: str, weights: Any, inputs: Any, grads: Any, slots: Any, lr: float
    ) -> None:
        """W -= lr * grads^T inputs (exact or approximate) for weight matrix ``name``;
        ``slots`` are the minibatch slots of the rows (see
        :meth:`ApproximateOuterProduct.apply`)."""
        layer = self.layers.get(name)
        if layer is None:
            self.ops.gemm(grads.T, inputs, out=weights, alpha=-lr)
        else:
            layer.apply(weights, inputs, grads, slots, lr)

    def parameters(self) -> dict[str, np.ndarray]:
        return {
            f"aop.{name}.{part}": self.ops.to_host(array)
            for name, layer in self.layers.items()
            for part, array in layer.state.items()
        }

    def reseed(self, seed: int) -> None:
        for offset, layer in enumerate(self.layers.values()):
            layer.reseed(seed + offset)

    def summary(self) -> str:
        """The share of the outer products' norm not applied at its step since the last
        call, for the epoch summary ('' for exact updates): tells a user when K is small."""
        if not self.layers:
            return ""
        left = sum(layer.memory_share() for layer in self.layers.values()) / len(self.layers)
        where = "dropped" if self.settings.aop_memory == "none" else "left in memory"
        return (
            f"aop: {100 * left:.1f}% of the weight-gradient outer products' norm {where} "
            f"(K = {self.settings.aop_k}, {self.settings.aop_policy}, {self.settings.aop_memory})"
        )
