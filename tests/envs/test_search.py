"""Search backends (BM25, HTTP) and the search environment."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from cahl.envs.base import MAX_OBSERVATION_CHARS
from cahl.envs.search import BM25Backend, HttpSearchBackend, SearchEnv, SearchError
from cahl.paths import cache_dir
from cahl.types import CahlInputError, ToolCall

DOCS = [
    {"title": "Citibank", "text": "Citibank was founded in 1812 as the City Bank of New York."},
    {"title": "James Madison", "text": "James Madison was the fourth president of the United States."},
    {"title": "Uranus", "text": "Voyager 2 is the only spacecraft that has visited Uranus."},
]


def test_bm25_ranks_the_matching_document_first_and_omits_non_matches():
    backend = BM25Backend(DOCS)
    assert backend.search("When was Citibank founded?", 2)[0]["title"] == "Citibank"
    assert backend.search("fourth president", 3)[0]["title"] == "James Madison"
    assert backend.search("zzzqqq", 3) == []
    assert len(backend.search("Voyager Uranus", 10)) == 1  # k beyond the corpus size is fine


def test_from_jsonl_reads_a_user_corpus_and_names_bad_lines(tmp_path):
    good = tmp_path / "corpus.jsonl"
    good.write_text("\n".join(json.dumps(d) for d in DOCS))
    assert BM25Backend.from_jsonl(good).search("Voyager", 1)[0]["title"] == "Uranus"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(DOCS[0]) + '\n{"title": "x"}\n')
    with pytest.raises(CahlInputError, match=r"bad.jsonl:2: expected string fields"):
        BM25Backend.from_jsonl(bad)


def test_wiki_offline_index_is_cached_and_gives_the_same_results(tmp_path, monkeypatch):
    wheels = cache_dir() / "wheels"  # reuse the downloaded wheel; put the index in a fresh cache
    (tmp_path / "wheels").symlink_to(wheels.resolve())
    monkeypatch.setenv("CAHL_CACHE_DIR", str(tmp_path))
    built = BM25Backend.from_wiki_offline()
    assert len(built.docs) == 10033 and list((tmp_path / "bm25").iterdir())
    loaded = BM25Backend.from_wiki_offline()
    for query in ["Who founded Citibank?", "first spacecraft to approach Uranus", "Sound of Music company"]:
        assert loaded.search(query, 5) == built.search(query, 5)
    assert built.search("Stanley Kubrick space odyssey film", 1)[0]["title"] == "2001: A Space Odyssey"


def test_env_returns_titles_and_capped_texts():
    long_docs = [{"title": f"Doc {i}", "text": f"alpha {i} " + "word " * 500} for i in range(5)]
    env = SearchEnv(BM25Backend(long_docs), k=5, max_doc_chars=300)
    [obs] = env.step([ToolCall("search", {"query": "alpha"})])
    assert obs.ok and obs.name == "search"
    assert obs.content.startswith("[1] Doc ") and "\n\n[2] Doc " in obs.content
    assert len(obs.content) <= MAX_OBSERVATION_CHARS + len("...[truncated]")


@pytest.mark.parametrize("call, message", [
    (ToolCall("lookup", {"query": "x"}), "unknown tool 'lookup'"),
    (ToolCall("search", {"q": "x"}), "exactly one argument, 'query'"),
    (ToolCall("search", {"query": ""}), "exactly one argument, 'query'"),
    (ToolCall("search", {"query": 3}), "exactly one argument, 'query'"),
    (ToolCall("search", {"query": "x", "k": 9}), "exactly one argument, 'query'"),
])
def test_env_bad_calls_become_error_observations(call, message):
    [obs] = SearchEnv(BM25Backend(DOCS)).step([call])
    assert not obs.ok and message in obs.content


def test_env_reports_no_results_as_a_normal_observation():
    [obs] = SearchEnv(BM25Backend(DOCS)).step([ToolCall("search", {"query": "zzzqqq"})])
    assert obs.ok and obs.content.startswith("No results") and "zzzqqq" not in obs.content  # no echo to reward


class _Handler(BaseHTTPRequestHandler):
    """A stand-in search API on 127.0.0.1: /ok echoes the query, /fail errs, /slow stalls, /junk is not JSON."""

    def do_GET(self):  # noqa: N802 - http.server's naming
        url = urlparse(self.path)
        params = parse_qs(url.query)
        if url.path == "/fail":
            self.send_response(503)
            self.end_headers()
            return
        if url.path == "/slow":
            time.sleep(1.0)  # the client has given up by now; answering would hit a closed socket
            return
        body = b"not json" if url.path == "/junk" else json.dumps({"results": [
            {"title": f"hit {n}", "text": f"{params['q'][0]} / key={self.headers.get('X-Key')}", "url": "u"}
            for n in range(int(params["n"][0]) + 2)]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_backend_sends_encoded_query_k_and_headers(server):
    backend = HttpSearchBackend(server + "/ok?q={query}&n={k}", headers={"X-Key": "secret"})
    results = backend.search("Citibank & Madison?", 2)
    assert results == [{"title": "hit 0", "text": "Citibank & Madison? / key=secret"},
                       {"title": "hit 1", "text": "Citibank & Madison? / key=secret"}]


@pytest.mark.parametrize("path, reason", [("/fail", "HTTP 503"), ("/junk", "did not return JSON"),
                                          ("/slow", "unreachable or too slow")])
def test_http_backend_failures_raise_search_error(server, path, reason):
    backend = HttpSearchBackend(server + path + "?q={query}&n={k}", timeout_s=0.3)
    with pytest.raises(SearchError, match=reason):
        backend.search("x", 3)


def test_env_turns_backend_failures_into_error_text(server):
    env = SearchEnv(HttpSearchBackend(server + "/fail?q={query}&n={k}"))
    [obs] = env.step([ToolCall("search", {"query": "x"})])
    assert not obs.ok and "HTTP 503" in obs.content


def test_url_template_without_query_is_rejected():
    with pytest.raises(CahlInputError, match=r"\{query\}"):
        HttpSearchBackend("http://127.0.0.1/search")
