"""The examples in the package's docstrings run and print what they show (doctest).

Each module whose source holds an example is imported and its examples are run; a wrong example
misleads the reader who copies it.
"""

from __future__ import annotations

import doctest
import importlib
import warnings
from pathlib import Path

import pytest

import ssl_multilabel

PACKAGE = Path(ssl_multilabel.__file__).parent

def _with_examples(name: str) -> bool:
    """The module's docstrings hold an example that doctest runs (not one marked +SKIP)."""
    tests = doctest.DocTestFinder().find(importlib.import_module(name))
    return any(not example.options.get(doctest.SKIP) for test in tests for example in test.examples)


MODULES = sorted(
    name for name in (".".join(("ssl_multilabel", *path.relative_to(PACKAGE).with_suffix("").parts))
                      for path in PACKAGE.rglob("*.py") if ">>>" in path.read_text(encoding="utf-8"))
    if _with_examples(name)
)


def test_the_examples_are_found():
    assert {"ssl_multilabel.labels", "ssl_multilabel.propagation.fill", "ssl_multilabel.metrics"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run_as_shown(name):
    module = importlib.import_module(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # examples of inputs that warn show the result, not the warning
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.attempted > 0 and result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} fail (printed above)"
