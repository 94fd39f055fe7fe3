"""Ranking for SearchEngine and ToolSearcher: Okapi BM25 over small, fixed document sets.

SearchEngine ranks the 73 documents of SearchEngine.json (which ships them pre-tokenised) as the
original does. ToolSearcher's original embeds the keywords and each API's "name + description"
with a sentence-transformer; we rank the same texts lexically (BM25 over lightly stemmed words),
which needs no model and is deterministic. It picks the recorded API in 32 of the 45 recorded
searches; the misses are keywords sharing no word with the API ('rash' -> SymptomSearch) or
choices among sibling APIs ('alarm' -> AddAlarm; ours says QueryAlarm).
"""

from __future__ import annotations

import math
import re
from collections import Counter

_WORD = re.compile(r"\w+|[^\w\s]")
_SUFFIXES = ("ations", "ation", "ators", "ator", "ings", "ing", "ions", "ion", "ates", "ate", "ers", "er", "es", "ed", "s")


def tokenize(text: str) -> list[str]:
    """Lower-cased words and punctuation marks, the way SearchEngine.json's documents were split."""
    return _WORD.findall(text.lower())


def stem(word: str) -> str:
    """Strip one common English suffix so 'calculate' and 'calculator' meet ('calcul')."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def bm25_scores(query: list[str], documents: list[list[str]], k1: float = 1.5, b: float = 0.75,
                epsilon: float = 0.25) -> list[float]:
    """Okapi BM25 score of each document for the query tokens.

    Terms in more than half the documents get a negative idf; like rank_bm25's BM25Okapi we floor
    those at `epsilon` times the mean idf, so a common word still counts a little.
    """
    n_docs = len(documents)
    avg_len = sum(len(d) for d in documents) / max(n_docs, 1)
    doc_freq = Counter(term for d in documents for term in set(d))
    idf = {t: math.log((n_docs - df + 0.5) / (df + 0.5)) for t, df in doc_freq.items()}
    floor = epsilon * (sum(idf.values()) / max(len(idf), 1))
    idf = {t: (v if v >= 0 else floor) for t, v in idf.items()}
    scores = []
    for doc in documents:
        counts, norm = Counter(doc), k1 * (1 - b + b * len(doc) / avg_len)
        scores.append(sum(idf.get(t, 0.0) * counts[t] * (k1 + 1) / (counts[t] + norm) for t in query if t in counts))
    return scores


def top_k(scores: list[float], k: int) -> list[int]:
    """Indices of the k highest scores, ties broken by position (deterministic)."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]


def split_name(name: str) -> str:
    """'GetUserToken' -> 'get user token' (ToolSearcher indexes an API by these words + description)."""
    return re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower()


def _words(text: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)  # keywords may name an API: 'QueryHealthData'
    return [stem(t) for t in tokenize(spaced) if t.isalnum()]


def rank_tools(keywords: str, apis: list[tuple[str, str]]) -> list[float]:
    """BM25 scores of (name, description) pairs for the keywords, over stemmed words only."""
    return bm25_scores(_words(keywords), [_words(split_name(name) + " " + text) for name, text in apis])
