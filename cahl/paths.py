"""Where data and caches live, and reading JSON/JSONL with errors that name file and line."""

from __future__ import annotations

import json
import os
import sys
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
            "holding apibank/, bamboogle/ and toolrl/, or fill it with `cahl data fetch` (see README, 'Data')"
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
    """One JSON document; errors (not UTF-8, invalid, nested past the parser's limit) name file:line."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise CahlInputError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CahlInputError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from e
    except RecursionError:
        raise CahlInputError(f"{path}: JSON nested too deeply to read (arrays/objects more than "
                             f"~{sys.getrecursionlimit()} levels deep)") from None


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, object) for each non-blank line; a bad line raises naming file:line."""
    with open(path, "rb") as f:
        yield from parse_jsonl(_utf8_lines(f, path), str(path))


def _utf8_lines(lines, path: Path) -> Iterator[str]:
    for lineno, raw in enumerate(lines, 1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CahlInputError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})") from None


def parse_jsonl(lines, where: str) -> Iterator[tuple[int, dict]]:
    """(line_number, object) for each non-blank line of `lines`; errors name `where`:line."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise CahlInputError(f"{where}:{lineno}: invalid JSON ({e.msg})") from e
        except RecursionError:
            raise CahlInputError(f"{where}:{lineno}: JSON nested too deeply to read (arrays/objects more than "
                                 f"~{sys.getrecursionlimit()} levels deep)") from None
        if not isinstance(obj, dict):
            raise CahlInputError(f"{where}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def require_keys(obj: dict, keys: list[str], where: str) -> None:
    """Raise naming `where` (e.g. 'file:line') and the missing keys."""
    missing = [k for k in keys if k not in obj]
    if missing:
        raise CahlInputError(f"{where}: missing key(s) {missing}; expected keys {keys}")
