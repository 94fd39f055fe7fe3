"""A fused forward for PEFT's LoRA Linear in the one case training and sampling use.

PEFT computes `base(x) + lora_B(lora_A(dropout(x))) * scaling`: after the two LoRA matmuls it
makes two more passes over an output-sized tensor (the scaling multiply, then the add), forward
and backward, in each of the 7 x 30 adapted projections of the 135M model. `torch.addmm` folds
the scaling and the add into the B matmul. The result is the same function of the same
parameters (float rounding aside); anything else (several active adapters, dropout, adapters
disabled or merged, mixed-adapter batches, DoRA and other variants, mixed dtypes) takes PEFT's
own forward unchanged.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F


def install_fused_lora(model) -> int:
    """Give every LoRA Linear of `model` the fused forward; returns how many were patched."""
    from peft.tuners.lora.layer import Linear

    patched = 0
    for module in model.modules():
        if type(module) is Linear and not getattr(module, "_cahl_fused", False):
            module._cahl_peft_forward = module.forward
            module.forward = types.MethodType(_fused_forward, module)
            module._cahl_fused = True
            patched += 1
    return patched


def _fused_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    active = self.active_adapters
    if args or kwargs or self.disable_adapters or self.merged or len(active) != 1:
        return self._cahl_peft_forward(x, *args, **kwargs)
    name = active[0]
    if name not in self.lora_A or name in self.lora_variant or not isinstance(self.lora_dropout[name], torch.nn.Identity):
        return self._cahl_peft_forward(x, *args, **kwargs)
    base = self.base_layer
    a, b = self.lora_A[name].weight, self.lora_B[name].weight
    if not (type(base) is torch.nn.Linear and x.dtype == base.weight.dtype == a.dtype == b.dtype):
        return self._cahl_peft_forward(x, *args, **kwargs)
    out = F.linear(x, base.weight, base.bias)
    low = F.linear(x, a)  # [..., r]
    fused = torch.addmm(out.reshape(-1, out.shape[-1]), low.reshape(-1, low.shape[-1]), b.t(), alpha=self.scaling[name])
    return fused.view(out.shape)
