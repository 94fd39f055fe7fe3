"""Where data and caches live, and reading JSON/JSONL with errors that name file and line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from cahl.types import CahlInputError, DataMissingError

DEFAULT_DATA_DIR = "../shared/data"


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """The data directory: `override` (the --data-dir flag), else $CAHL_DATA_DIR, else ../shared/data."""
    path = Path(override or os.environ.get("CAHL_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()
    if not path.is_dir():
        raise DataMissingError(
            f"data directory {path} does not exist; pass --data-dir or set CAHL_DATA_DIR to the folder "
            "holding apibank/, bamboogle/ and toolrl/ (see README, 'Data')"
        )
    return path


def cache_dir() -> Path:
    """Cache for converted models and downloaded wheels: $CAHL_CACHE_DIR, else ~/.cache/cahl."""
    path = Path(os.environ.get("CAHL_CACHE_DIR") or Path.home() / ".cache" / "cahl").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def require_file(path: Path, source: str) -> Path:
    """Return `path` if it exists, else raise an error naming it and its public source."""
    if not path.is_file():
        raise DataMissingError(f"missing data file {path}; it comes from {source}")
    return path


def read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise CahlInputError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from e


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, object) for each non-blank line; a bad line raises naming file:line."""
    with open(path, encoding="utf-8") as f:
        yield from parse_jsonl(f, str(path))


def parse_jsonl(lines, where: str) -> Iterator[tuple[int, dict]]:
    """(line_number, object) for each non-blank line of `lines`; errors name `where`:line."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise CahlInputError(f"{where}:{lineno}: invalid JSON ({e.msg})") from e
        if not isinstance(obj, dict):
            raise CahlInputError(f"{where}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def require_keys(obj: dict, keys: list[str], where: str) -> None:
    """Raise naming `where` (e.g. 'file:line') and the missing keys."""
    missing = [k for k in keys if k not in obj]
    if missing:
        raise CahlInputError(f"{where}: missing key(s) {missing}; expected keys {keys}")
