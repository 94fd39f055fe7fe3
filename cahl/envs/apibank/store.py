"""The databases the API-Bank APIs read and write, and one episode's private view of them.

The init databases (`init_database/*.json`, 3.2 MB, ImageCaptioning.json alone 2.5 MB) are parsed
once per process and never modified. An episode reads them in place and copies a table only the
first time one of its APIs writes to it (copy-on-write), so `reset` costs nothing and episodes
never see each other's changes.
"""

from __future__ import annotations

import copy
import functools
import threading
from pathlib import Path
from typing import Any

from cahl.paths import iter_jsonl, read_json, require_file, require_keys
from cahl.types import CahlInputError

SOURCE = "AlibabaResearch/DAMO-ConvAI api-bank (api-bank/init_database); run `cahl data fetch apibank`"
SAMPLE_DIRS = ("lv1-lv2-samples/level-1-given-desc", "lv1-lv2-samples/level-2-toolsearcher")

_LOAD_LOCK = threading.RLock()  # tools run in worker threads; parse each file once
EPISODE_TABLES = frozenset({"BankAccounts", "SentEmails"})  # no init file: they start empty
INIT_TABLES = ("Account", "Agenda", "Alarm", "Appointments", "Bank", "HealthData", "History", "Hotel",
               "ImageCaptioning", "Meeting", "QuestionAnswering", "Reminder", "Scenes", "SearchEngine",
               "SpeechRecognition", "Stock", "Symptom", "TimeSwitch", "Wiki")


@functools.cache
def _load_table(root: Path, table: str) -> Any:
    return read_json(require_file(root / "init_database" / f"{table}.json", SOURCE))


def init_table(root: Path, table: str) -> Any:
    """The shared, read-only init database `table` under `root` (parsed on first use)."""
    with _LOAD_LOCK:
        return _load_table(root, table)


# The shape of each init database, as API-Bank ships it: (top-level type, type of each row: a value of
# the top-level object or an item of the list, keys every row has). A "list" row is a list of objects
# with those keys. SearchEngine is an object of two parallel lists.
TABLE_SHAPES: dict[str, tuple[type, type | None, tuple[str, ...]]] = {
    "Account": (dict, dict, ("email", "password", "token")),
    "Agenda": (dict, dict, ("content", "location", "time", "username")),
    "Alarm": (dict, dict, ("time", "username")),
    "Appointments": (dict, dict, ("date", "doctor_name", "patient_name")),
    "Bank": (dict, dict, ("age", "balance", "city")),
    "HealthData": (dict, list, ("time",)),
    "History": (dict, list, ("Date", "Description", "Title")),
    "Hotel": (dict, dict, ("adult_count", "check_in_time", "check_out_time", "child_count", "hotel_name", "room_count")),
    "ImageCaptioning": (list, dict, ("caption", "url")),
    "Meeting": (dict, dict, ("attendees", "end_time", "location", "meeting_topic", "start_time", "username")),
    "QuestionAnswering": (dict, list, ("answer", "question")),
    "Reminder": (dict, dict, ("content", "time", "username")),
    "Scenes": (dict, list, ("description", "name")),
    "SearchEngine": (dict, None, ("raw_documents", "tokenized_documents")),
    "SpeechRecognition": (dict, str, ()),
    "Stock": (dict, dict, ()),
    "Symptom": (dict, list, ("aid", "description", "name")),
    "TimeSwitch": (dict, list, ("on", "time")),
    "Wiki": (dict, dict, ("content", "summary", "url")),
}


def check_init_tables(root: Path) -> None:
    """Parse and shape-check every init database now (20 ms, once per process), so a missing,
    corrupt or reshaped file stops the run naming the file, instead of turning every call of an API
    that reads it into a tool error (or a crash) the policy is trained on."""
    with _LOAD_LOCK:
        _check_tables(root)


@functools.cache
def _check_tables(root: Path) -> None:  # once per folder: the tables never change in a process
    for table in INIT_TABLES:
        _check_shape(root / "init_database" / f"{table}.json", table, init_table(root, table))


def _check_shape(path: Path, table: str, data: Any) -> None:
    top, row_type, keys = TABLE_SHAPES[table]

    def fail(where: str, expected: str, got: Any) -> None:
        raise CahlInputError(f"{path}{where}: expected {expected}, got {type(got).__name__} {str(got)[:80]!r}")

    if not isinstance(data, top):
        fail("", f"a JSON {'object' if top is dict else 'list'} (API-Bank's {table} table)", data)
    if row_type is None:  # SearchEngine
        for key in keys:
            if not isinstance(data.get(key), list):
                fail(f"[{key!r}]", "a list", data.get(key))
        return
    rows = data.items() if top is dict else enumerate(data)
    for name, row in rows:
        items = row if row_type is list else [row]
        if not isinstance(row, row_type):
            fail(f"[{name!r}]", f"a JSON {row_type.__name__.replace('dict', 'object').replace('str', 'string')}", row)
        for i, item in enumerate(items if keys else []):
            where = f"[{name!r}]" + (f"[{i}]" if row_type is list else "")
            if not isinstance(item, dict):
                fail(where, "a JSON object", item)
            missing = [k for k in keys if k not in item]
            if missing:
                raise CahlInputError(f"{path}{where}: missing key(s) {missing}; every {table} entry has {list(keys)}")


@functools.cache
def _caption_index(root: Path) -> dict[str, str]:
    rows = init_table(root, "ImageCaptioning")
    index = {}
    for i, row in enumerate(rows):
        require_keys(row, ["url", "caption"], f"{root}/init_database/ImageCaptioning.json[{i}]")
        index[row["url"].strip()] = row["caption"]
    return index


def caption_index(root: Path) -> dict[str, str]:
    """ImageCaptioning.json (a list of {url, caption}) as a url -> caption lookup."""
    with _LOAD_LOCK:
        return _caption_index(root)


def sample_files(root: Path) -> list[Path]:
    """Every level-1 and level-2 sample dialogue, in a stable order."""
    return [path for folder in SAMPLE_DIRS for path in sorted((root / folder).glob("*.jsonl"))]


@functools.cache
def _recorded(root: Path, api_name: str) -> tuple[tuple[dict, Any], ...]:
    found = []
    for path in sample_files(root):
        for lineno, turn in iter_jsonl(path):
            if turn.get("role") == "API" and turn.get("api_name") == api_name:
                require_keys(turn, ["param_dict", "result"], f"{path}:{lineno}")
                if turn["result"].get("exception") is None:
                    found.append((turn["param_dict"], turn["result"]["output"]))
    return tuple(found)


def recorded_outputs(root: Path, api_name: str) -> tuple[tuple[dict, Any], ...]:
    """(arguments, output) of every successful `api_name` call recorded in the sample dialogues.

    The offline stand-in for APIs whose originals call a web service (Dictionary, Translate):
    the dataset ships no table for them, only these recorded answers.
    """
    with _LOAD_LOCK:
        return _recorded(root, api_name)


class EpisodeState:
    """One episode's databases: shared init tables until first written, then a private copy."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._own: dict[str, Any] = {}
        self.pending_password_reset: str | None = None  # username after ForgotPassword's first call

    def read(self, table: str) -> Any:
        """The table for reading; callers must not modify what they get."""
        if table in self._own:
            return self._own[table]
        return {} if table in EPISODE_TABLES else init_table(self.root, table)

    def write(self, table: str) -> Any:
        """The episode's own copy of the table, made on first write."""
        if table not in self._own:
            self._own[table] = {} if table in EPISODE_TABLES else copy.deepcopy(init_table(self.root, table))
        return self._own[table]

    @property
    def copied_tables(self) -> list[str]:
        return sorted(self._own)
