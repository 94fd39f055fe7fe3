"""Build the policies a command needs from the model config."""

from __future__ import annotations

import torch

from cahl.agents.chat import ChatFormat
from cahl.agents.generation import HFBackend
from cahl.agents.model import load_model
from cahl.agents.rollout import SharedBackend

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_policies(model_cfg, adapters: str | None = None):
    """(policies, chat) for evaluation: the raw model, or trained adapters from a checkpoint."""
    if model_cfg.threads:
        torch.set_num_threads(model_cfg.threads)
    if adapters:
        from cahl.agents.policy import PolicySet

        policies = PolicySet.from_checkpoint(model_cfg, adapters)
        return policies, ChatFormat(policies.tokenizer)
    model, tokenizer = load_model(model_cfg.name, DTYPES[model_cfg.dtype], model_cfg.device)
    return SharedBackend(HFBackend(model, tokenizer, max_batch=model_cfg.max_batch)), ChatFormat(tokenizer)
