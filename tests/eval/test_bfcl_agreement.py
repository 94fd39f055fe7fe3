"""Our BFCL checker gives the official checker's verdicts on a few hundred generated answers.

The full run (every task of every AST category, ~360k answers) is
`python3 benchmarks/bfcl_checker_agreement.py`; this is the fast slice of the same comparison.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "bfcl_checker_agreement.py"


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("bfcl_checker_agreement", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def agreement():
    module = _benchmark_module()
    try:
        for version in ("v3", "v4"):
            module.load_official(version)
    except Exception as e:  # any failure to unpack or import the official code
        pytest.skip(f"the official BFCL checker cannot be imported from the cached wheels here: {e!r}")
    return module


def test_official_checker_agrees_on_every_ast_category(agreement):
    report = agreement.compare(["v3", "v4"], limit=2, per_task=12, seed=3)
    agreed, total = report.totals()
    assert total >= 300
    assert len(report.per_category) == 26  # 13 AST categories per version
    assert report.disagreements == []
    assert agreed == total
    assert report.official_raised == []
    # the slice exercises rejections of many kinds, not only correct answers
    assert len(report.verdicts) >= 10


def test_java_and_javascript_source_text_agree(agreement):
    report = agreement.compare(["v3"], ["java", "javascript"], limit=4, seed=5)
    assert report.totals()[1] >= 200
    assert report.disagreements == []
