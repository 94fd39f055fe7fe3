"""`cahl export RUN/final OUT [--merge]`: a trained run's policies as standard Hugging Face folders.

Per adapter of the checkpoint (one per role; one `shared` in the shared layout) OUT/<adapter>/ is
either the PEFT adapter as saved (`PeftModel.from_pretrained(base, OUT/planner)`) or, with
`--merge`, the base with that adapter merged in (PEFT's `merge_and_unload`), which plain
transformers loads (`AutoModelForCausalLM.from_pretrained(OUT/planner)`). Each folder also gets the
tokenizer and a model card (README.md) with the run's eval table; OUT/README.md is the same card
for the whole export. Without --merge OUT is itself a cahl checkpoint (policy.json beside the
adapters), so `cahl eval --adapters OUT` and `cahl run --adapters OUT` load it.

The weights alone are not the agent: each role was trained on cahl's prompts (agents/prompts.py),
which the card names with their version.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from cahl.agents.policy import POLICY_FILE, read_policy_meta
from cahl.types import CahlInputError

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def export(final: str | Path, out: str | Path, merge: bool = False, base: str | None = None) -> Path:
    """Write the export of checkpoint folder `final` (a run's final/ or any saved PolicySet) to
    `out` (must not exist, or be empty). `base`: the base model, default the one it was trained on."""
    final, out = Path(final), Path(out)
    meta = read_policy_meta(final)
    base = base or meta.get("base_model")
    if not base:
        raise CahlInputError(f"{final / POLICY_FILE}: no 'base_model'; pass --model with the base it was trained on")
    if out.exists() and any(out.iterdir()):
        raise CahlInputError(f"{out}: exists and is not empty; export into a new folder")
    tmp = out.with_name(f".{out.name}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _write(tmp, final, meta, base, merge, model_card(final, meta, base, merge, out))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed export leaves nothing behind
        raise
    if out.exists():
        out.rmdir()
    tmp.replace(out)
    return out


def _write(tmp: Path, final: Path, meta: dict, base: str, merge: bool, card: str) -> None:
    from cahl.agents.model import load_model, load_tokenizer

    roles_of: dict[str, list[str]] = {}
    for role, adapter in meta["adapters"].items():
        roles_of.setdefault(adapter, []).append(role)
    tokenizer = load_tokenizer(base)
    for adapter, roles in roles_of.items():
        folder = tmp / adapter
        if merge:
            from peft import PeftModel

            model, _ = load_model(base, torch.float32)  # a fresh base per adapter: merging changes it in place
            PeftModel.from_pretrained(model, str(final / adapter)).merge_and_unload().save_pretrained(folder)
        else:
            folder.mkdir()
            for name in ADAPTER_FILES:
                shutil.copy2(final / adapter / name, folder / name)
        tokenizer.save_pretrained(folder)
        (folder / "README.md").write_text(card.replace("# ", f"# {adapter} ({', '.join(roles)}) — ", 1))
    if not merge:
        shutil.copy2(final / POLICY_FILE, tmp / POLICY_FILE)
    (tmp / "README.md").write_text(card)


def model_card(final: Path, meta: dict, base: str, merge: bool, out: Path) -> str:
    """Markdown: what the export is, how to load it, the run's training setup and eval table."""
    from cahl.agents.prompts import PROMPT_VERSION
    from cahl.eval.report import comparison_table

    run_dir = final.parent
    adapters = dict.fromkeys(meta["adapters"].values())
    first = next(iter(adapters))
    how = (f"AutoModelForCausalLM.from_pretrained('{first}')" if merge else
           f"PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE), '{first}')")
    md = [f"# cahl policies from {final}", "",
          f"Roles {meta['roles']} in layout `{meta['mode']}` (role -> folder: "
          + ", ".join(f"{r} -> `{a}/`" for r, a in meta["adapters"].items()) + f"), base model `{base}`. "
          + ("Each folder is the base with its LoRA adapter merged in (PEFT `merge_and_unload`), float32."
             if merge else "Each folder is a PEFT LoRA adapter; this folder is also a cahl checkpoint."), "",
          "```python", "from transformers import AutoModelForCausalLM" + ("" if merge else "\nfrom peft import PeftModel"),
          *([] if merge else [f"BASE = {base!r}" + ("  # cahl's embedded SmolLM2-135M-Instruct: the folder "
                                                    "cahl.agents.model.embedded_path() returns" if base == "embedded" else "")]),
          f"model = {how}", "```", "",
          f"The roles were trained on cahl's prompts (cahl/agents/prompts.py, prompt version {PROMPT_VERSION}); "
          f"run the agent with `cahl run --adapters {final if merge else out}`.", ""]
    config = run_dir / "config.yaml"
    if config.is_file():
        import yaml

        cfg = yaml.safe_load(config.read_text()) or {}
        train, model = cfg.get("train", {}), cfg.get("model", {})
        md += ["## Training", "", f"schedule `{train.get('schedule')}`, {train.get('steps')} GRPO steps, "
               f"data {train.get('data')}, LoRA r={model.get('lora_r')} alpha={model.get('lora_alpha')} on "
               f"{model.get('lora_targets')}, seed {cfg.get('seed')} (full config: {config}).", ""]
    table = comparison_table(run_dir)
    md += ["## Evaluation", ""]
    md += ([f"Accuracy per benchmark category, 95% interval, items (from {run_dir}/eval_*.json):", "", table, ""]
           if table else [f"This run has no evaluation (no eval_*.json in {run_dir}); "
                          f"`cahl eval --adapters {final} --bench ...` gives one.", ""])
    return "\n".join(md)


