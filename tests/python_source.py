"""A module's syntax tree, for the tests that read the project's own source.

CPython 3.11's ``ast`` can raise ``SystemError: AST constructor recursion depth mismatch`` when
the calling thread's recursion bookkeeping is off (python/cpython#106905; seen once in the
suite, in a pytest-xdist worker, on a file that parses everywhere else). The tree is then built
again in a thread of its own, whose bookkeeping starts clean; any other error is raised.
"""

from __future__ import annotations

import ast
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def parse(path: Path) -> ast.Module:
    source = path.read_text()
    try:
        return ast.parse(source)
    except SystemError as exc:
        if "recursion depth mismatch" not in str(exc):
            raise
    with ThreadPoolExecutor(max_workers=1) as fresh:
        return fresh.submit(ast.parse, source).result()
