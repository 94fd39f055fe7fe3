"""A fused forward for PEFT's LoRA Linear, and per-row adapter routing for mixed batches.

PEFT computes `base(x) + lora_B(lora_A(dropout(x))) * scaling`: after the two LoRA matmuls it
makes two more passes over an output-sized tensor (the scaling multiply, then the add), forward
and backward, in each of the 7 x 30 adapted projections of the 135M model. `torch.addmm` folds
the scaling and the add into the B matmul. The result is the same function of the same
parameters (float rounding aside), also for float32 adapters on a bfloat16 base (the LoRA term is
computed in the adapter's dtype, as PEFT does); anything else (several active adapters, dropout,
adapters disabled or merged, DoRA and other variants) takes PEFT's own forward unchanged.

Routing (`route_adapters`): inside the block every row of the batch runs through the adapter
named for it (None: the base weights alone), whatever adapter is active, so the planner's and the
executor's turns can share one decode batch. The fused path adds each adapter's LoRA term to its
rows; where it does not apply, PEFT's own mixed-batch forward (`adapter_names=`) does the same.
"""

from __future__ import annotations

import types
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F

BASE = "__base__"  # PEFT's adapter name for "no adapter" in a mixed batch


class _Route:
    """The per-row adapters of the forward in progress; one object shared by a model's LoRA layers."""

    def __init__(self) -> None:
        self.names: list[str] | None = None  # per row, BASE for none
        self.groups: list[tuple[str, torch.Tensor]] = []  # adapter -> its rows
        self.single: str | None = None  # the adapter of every row, when there is one
        self._masks: dict = {}

    def row_mask(self, names: tuple[str, ...], ranks: list[int], dims: int) -> torch.Tensor:
        """[rows, 1.., sum r]: 1 where a row's own adapter's LoRA columns are (adapters in `names` order)."""
        key = (names, tuple(ranks), dims)
        if key not in self._masks:
            rows = dict(self.groups)
            mask = torch.zeros((len(self.names), sum(ranks)), device=next(iter(rows.values())).device)
            start = 0
            for name, r in zip(names, ranks):
                mask[rows[name], start:start + r] = 1.0
                start += r
            self._masks[key] = mask.view((len(self.names),) + (1,) * (dims - 2) + (sum(ranks),))
        return self._masks[key]


def install_fused_lora(model) -> int:
    """Give every LoRA Linear of `model` the fused, routable forward; returns how many were patched."""
    from peft.tuners.lora.layer import Linear

    route = getattr(model, "_cahl_route", None) or _Route()
    model._cahl_route = route
    patched = 0
    for module in model.modules():
        if type(module) is Linear and not getattr(module, "_cahl_fused", False):
            module._cahl_peft_forward = module.forward
            module.forward = types.MethodType(_fused_forward, module)
            module._cahl_fused, module._cahl_route = True, route
            patched += 1
    return patched


@contextmanager
def route_adapters(model, names: list[str | None]) -> Iterator[None]:
    """Run row i of every forward in the block through adapter names[i]. All None: no routing (the
    active adapter, as outside the block)."""
    if all(name is None for name in names):
        yield
        return
    route = getattr(model, "_cahl_route", None)
    if route is None:
        raise ValueError("route_adapters: this model's LoRA layers have no routed forward (install_fused_lora)")
    if route.names is not None:
        raise RuntimeError("route_adapters: blocks do not nest")
    rows: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        if name is not None:
            rows.setdefault(name, []).append(i)
    device = next(model.parameters()).device
    route.names = [BASE if name is None else name for name in names]
    route.groups = [(name, torch.tensor(r, device=device)) for name, r in rows.items()]
    route.single = names[0] if len(rows) == 1 and None not in names else None
    try:
        yield
    finally:
        route.names, route.groups, route.single, route._masks = None, [], None, {}


def _fused_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    route = self._cahl_route
    if route.names is not None and not args and not kwargs:
        if self.disable_adapters or self.merged:
            raise RuntimeError("route_adapters: adapters are disabled or merged on this model")
        if route.single is None:
            return _routed_forward(self, x, route)
        weights = _plain_weights(self, route.single, x)
        if weights is None:
            return self._cahl_peft_forward(x, adapter_names=route.names)
        name = route.single
    else:
        active = self.active_adapters
        if args or kwargs or self.disable_adapters or self.merged or len(active) != 1:
            return self._cahl_peft_forward(x, *args, **kwargs)
        name = active[0]
        weights = _plain_weights(self, name, x)
        if weights is None:
            return self._cahl_peft_forward(x, *args, **kwargs)
    a, b = weights
    out = F.linear(x, self.base_layer.weight, self.base_layer.bias)
    low = F.linear(x.to(a.dtype), a)  # [..., r]
    return _add_low_rank(out, low, b, self.scaling[name])


def _add_low_rank(out: torch.Tensor, low: torch.Tensor, b: torch.Tensor, scaling: float) -> torch.Tensor:
    """out + scaling * low @ b.T in one addmm, computed in the adapter's dtype and returned in the
    base's (PEFT's order for e.g. float32 adapters on a bfloat16 base)."""
    total = torch.addmm(out.reshape(-1, out.shape[-1]).to(b.dtype), low.reshape(-1, low.shape[-1]), b.t(), alpha=scaling)
    return total.view(out.shape).to(out.dtype)


def _routed_forward(self, x: torch.Tensor, route: _Route) -> torch.Tensor:
    """Rows of several adapters: the base output, plus each adapter's LoRA term on its own rows."""
    present = [(name, rows) for name, rows in route.groups if name in self.lora_A]  # PEFT: others get base
    weights = [_plain_weights(self, name, x) for name, _ in present]
    if any(w is None for w in weights) or torch.is_grad_enabled():  # training never routes: PEFT's path
        return self._cahl_peft_forward(x, adapter_names=route.names)
    out = F.linear(x, self.base_layer.weight, self.base_layer.bias)
    if not present:
        return out
    # sampling: all adapters' A in one matmul, other adapters' columns zeroed per row, all B in one
    # matmul: the cost of one adapter (the LoRA terms are tiny) instead of a pass per adapter
    names = tuple(name for name, _ in present)
    a_all, b_all = _stacked(self, names, weights)
    low = F.linear(x.to(a_all.dtype), a_all) * route.row_mask(names, [a.shape[0] for a, _ in weights], x.dim())
    return _add_low_rank(out, low, b_all, 1.0)


def _stacked(self, names: tuple[str, ...], weights) -> tuple[torch.Tensor, torch.Tensor]:
    """[sum r, in] of the adapters' A and [out, sum r] of their scaled B, rebuilt when a weight changed."""
    key = (names, tuple((a.data_ptr(), a._version, b.data_ptr(), b._version) for a, b in weights))
    cached = getattr(self, "_cahl_stacked", None)
    if cached is None or cached[0] != key:
        a_all = torch.cat([a for a, _ in weights])
        b_all = torch.cat([b * self.scaling[name] for name, (_, b) in zip(names, weights)], dim=1)
        cached = self._cahl_stacked = (key, a_all, b_all)
    return cached[1], cached[2]


def _plain_weights(self, name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """LoRA (A, B) of adapter `name` when the fused path computes exactly PEFT's function, else None."""
    if name not in self.lora_A or name in self.lora_variant or not isinstance(self.lora_dropout[name], torch.nn.Identity):
        return None
    base = self.base_layer
    a, b = self.lora_A[name].weight, self.lora_B[name].weight
    if not (type(base) is torch.nn.Linear and x.dtype == base.weight.dtype and a.dtype == b.dtype):
        return None
    return a, b
