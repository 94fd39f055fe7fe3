"""`cahl data fetch NAME`: download API-Bank, ToolRL or Bamboogle from their public sources into
the data folder, checking every file against a sha256 pinned in cahl/data/fetch.sha256.

Each file comes from a pinned commit of its public repository (the sources named in each data
set's MANIFEST.md), as https://raw.githubusercontent.com/OWNER/REPO/COMMIT/PATH; `--mirror URL`
replaces that base with a folder of the same layout (`file://` URLs work, which the tests use).
Only the files cahl reads are fetched, plus each source's licence text. A file is downloaded to a
hidden temporary file beside its destination, checked, then renamed into place, so a failed or
interrupted fetch never leaves a half-written or unverified file where the loaders look.

The commands that read these sets check them (`require_data`) before they load a model: a missing
file is an error naming `cahl data fetch NAME`.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cahl.paths import DEFAULT_DATA_DIR
from cahl.types import CahlInputError, DataMissingError

GITHUB_RAW = "https://raw.githubusercontent.com"
SUMS_FILE = Path(__file__).with_name("fetch.sha256")  # "<sha256>  <path in the data folder>" per line

_DAMO_TEST = ("AlibabaResearch/DAMO-ConvAI", "5d5a2d40b2e6b6998a06961cc43ad0a8c069b153")  # test-data moved to HF after it
_DAMO = ("AlibabaResearch/DAMO-ConvAI", "483554eae102996f5ec1f4feab4e78ef29c2a394")
_TOOLRL = ("qiancheng0/ToolRL", "8cee13ec0ca72f0461da372a93a6fd8140dbb840")


@dataclass(frozen=True)
class Upstream:
    """Files under `prefix` of the data folder come from `path_prefix` of `repo` at `commit`."""

    prefix: str  # in the data folder, e.g. "apibank/original/init_database/"
    repo: str  # OWNER/REPO on GitHub
    commit: str
    path_prefix: str  # in the repository, e.g. "api-bank/init_database/"

    def url(self, path: str, base: str) -> str:
        return f"{base.rstrip('/')}/{self.repo}/{self.commit}/{self.path_prefix}{path[len(self.prefix):]}"


@dataclass(frozen=True)
class Derived:
    """A file cahl reads that no source ships: built from a fetched file (then checked like one)."""

    path: str
    source: str
    build: Callable[[bytes], bytes]


def _bamboogle_jsonl(data: bytes) -> bytes:
    """ToolRL's Bamboogle list [{"Question", "Answer"}] as the lines data/bamboogle.py reads."""
    items = json.loads(data)
    return "".join(json.dumps({"id": f"bamboogle_{i}", "question": x["Question"], "answer": x["Answer"]},
                              ensure_ascii=False) + "\n" for i, x in enumerate(items)).encode("utf-8")


# Longest prefix first within a set: the first source whose prefix a path starts with is used.
UPSTREAMS: dict[str, list[Upstream]] = {
    "apibank": [
        # of test-data, cahl reads the API-call items of levels 1 and 2 (data/apibank.py)
        Upstream("apibank/original/test-data/level-1-api.json", *_DAMO_TEST, "api-bank/test-data/level-1-api.json"),
        Upstream("apibank/original/test-data/level-2-api.json", *_DAMO_TEST, "api-bank/test-data/level-2-api.json"),
        Upstream("apibank/original/lv1-lv2-samples/", *_DAMO, "api-bank/lv1-lv2-samples/"),
        Upstream("apibank/original/init_database/", *_DAMO, "api-bank/init_database/"),
        Upstream("apibank/LICENSE.api-bank.txt", *_DAMO, "api-bank/LICENSE"),
        Upstream("apibank/LICENSE.DAMO-ConvAI-root.txt", *_DAMO, "LICENSE"),
        Upstream("apibank/toolrl/LICENSE.ToolRL.txt", *_TOOLRL, "LICENSE"),
        Upstream("apibank/toolrl/", *_TOOLRL, "benchmarks/API-Bank/"),
    ],
    "toolrl": [
        Upstream("toolrl/rlla_sft.json", *_TOOLRL, "dataset/rlla_4k_raw/rlla_sft.json"),
        Upstream("toolrl/rlla_4k_test.parquet", *_TOOLRL, "dataset/rlla_4k/test.parquet"),
        Upstream("toolrl/LICENSE.ToolRL.txt", *_TOOLRL, "LICENSE"),
    ],
    "bamboogle": [
        Upstream("bamboogle/bamboogle_toolrl_data.json", *_TOOLRL, "benchmarks/Bamboogle/data.json"),
        Upstream("bamboogle/LICENSE.ToolRL.txt", *_TOOLRL, "LICENSE"),
    ],
}
DERIVED: dict[str, list[Derived]] = {
    "bamboogle": [Derived("bamboogle/bamboogle_125.jsonl", "bamboogle/bamboogle_toolrl_data.json", _bamboogle_jsonl)],
}
DATASETS = tuple(UPSTREAMS)

# What each benchmark and training source reads: (data set, path prefix in the data folder).
BENCH_DATA = {
    "api_bank": ("apibank", "apibank/toolrl/"),
    "api_bank_exec": ("apibank", "apibank/original/"),
    "bamboogle": ("bamboogle", "bamboogle/bamboogle_125.jsonl"),
}
TRAIN_DATA = {"toolrl": ("toolrl", "toolrl/")}


def pinned_sums() -> dict[str, str]:
    """{path in the data folder: sha256} of every file `cahl data fetch` writes."""
    sums = {}
    for lineno, line in enumerate(SUMS_FILE.read_text().splitlines(), 1):
        if line.strip():
            digest, _, path = line.partition("  ")
            if len(digest) != 64 or not path:
                raise CahlInputError(f"{SUMS_FILE}:{lineno}: expected '<sha256>  <path>', got {line[:100]!r}")
            sums[path] = digest
    return sums


def dataset_files(name: str) -> dict[str, str]:
    """{path: sha256} of data set `name`, derived files included."""
    if name not in UPSTREAMS:
        raise CahlInputError(f"unknown data set {name!r}; expected one of {list(DATASETS)}")
    return {p: s for p, s in pinned_sums().items() if p.split("/", 1)[0] == name}


def fetch_hint(name: str) -> str:
    return f"run `cahl data fetch {name}` (add --data-dir DIR for another folder)"


def fetch(name: str, data_dir: str | os.PathLike | None = None, mirror: str | None = None,
          log: Callable[[str], None] = print) -> Path:
    """Download data set `name` into the data folder (created if absent) and verify every file;
    files already there with the pinned sum are kept. Returns the data folder."""
    files = dataset_files(name)
    root = Path(data_dir or os.environ.get("CAHL_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()
    base = mirror or GITHUB_RAW
    derived = {d.path: d for d in DERIVED.get(name, [])}
    fetched = kept = 0
    for path, digest in files.items():
        if path in derived:
            continue
        dest = root / path
        if dest.is_file() and _sha256(dest.read_bytes()) == digest:
            kept += 1
            continue
        source = _source(name, path)
        url = source.url(path, base)
        _write_verified(dest, _download(url, dest), digest, url)
        fetched += 1
    for path, d in derived.items():
        dest = root / path
        if dest.is_file() and _sha256(dest.read_bytes()) == files[path]:
            kept += 1
            continue
        _write_verified(dest, d.build((root / d.source).read_bytes()), files[path], f"{d.path} (built from {d.source})")
        fetched += 1
    log(f"{name}: {fetched} file(s) fetched, {kept} already present and verified, in {root}")
    return root


def require_data(needs: list[tuple[str, str]], data_dir: str | os.PathLike | None = None) -> None:
    """Raise DataMissingError naming the fetch command if a file of `needs` ((data set, path
    prefix) pairs, see BENCH_DATA) is absent. Existence only (sums are checked by `fetch`), and
    not the licence texts, which fetch brings along but no loader reads."""
    if not needs:
        return
    root = Path(data_dir or os.environ.get("CAHL_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()
    for name, prefix in dict.fromkeys(needs):
        missing = [p for p in dataset_files(name) if p.startswith(prefix) and not Path(p).name.startswith("LICENSE")
                   and not (root / p).is_file()]
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise DataMissingError(f"missing data file(s) of {name} in {root}: {shown}; {fetch_hint(name)}")


def bench_needs(spec: str) -> list[tuple[str, str]]:
    """The data a --bench spec reads (benchmark names as in eval/benchmarks.py)."""
    names = [part.strip().partition(":")[0] for part in spec.split(",") if part.strip()]
    return [BENCH_DATA[n] for n in names if n in BENCH_DATA]


def train_needs(sources: list[str]) -> list[tuple[str, str]]:
    """The data train.data's sources read."""
    return [TRAIN_DATA[s] for s in sources if s in TRAIN_DATA]


def _source(name: str, path: str) -> Upstream:
    for source in UPSTREAMS[name]:
        if path.startswith(source.prefix):
            return source
    raise CahlInputError(f"{SUMS_FILE}: {path} has no source in cahl.data.fetch.UPSTREAMS[{name!r}]")


def _download(url: str, dest: Path) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise DataMissingError(f"could not download {url} (for {dest}): {reason}") from None


def _write_verified(dest: Path, data: bytes, digest: str, origin: str) -> None:
    """Write `data` to `dest` only if its sha256 is `digest`: via a temporary file and a rename."""
    got = _sha256(data)
    if got != digest:
        raise CahlInputError(f"{dest}: sha256 of {origin} is {got}, expected {digest} (pinned in {SUMS_FILE.name}); "
                             f"nothing was written")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pin(data_dir: str | os.PathLike) -> str:
    """The text of fetch.sha256 computed from a verified copy of the sets (maintainers: when a
    source commit changes, fetch it, check it, then `python -m cahl.data.fetch DIR > cahl/data/fetch.sha256`)."""
    root = Path(data_dir)
    lines = []
    for name, sources in UPSTREAMS.items():
        paths = set()
        for source in sources:
            top = root / source.prefix
            if source.prefix.endswith("/"):
                paths |= {p.relative_to(root).as_posix() for p in top.rglob("*") if p.is_file()}
            else:
                paths.add(source.prefix)
        paths |= {d.path for d in DERIVED.get(name, [])}
        lines += [f"{_sha256((root / p).read_bytes())}  {p}" for p in sorted(paths)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(pin(sys.argv[1]))
