"""A module named by :func:`core.lazy.lazy_module` is imported on its first attribute."""

import subprocess
import sys

from core.lazy import lazy_module


def _in_a_new_process(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_the_module_is_imported_on_its_first_attribute_and_not_before() -> None:
    out = _in_a_new_process(
        "import sys; from core.lazy import lazy_module; "
        "m = lazy_module('fractions'); print('fractions' in sys.modules); "
        "half = m.Fraction(1, 2); print('fractions' in sys.modules, half, m.Fraction is "
        "sys.modules['fractions'].Fraction)"
    )
    assert out.splitlines() == ["False", "True 1/2 True"]


def test_a_module_already_imported_is_returned_as_it_is() -> None:
    assert lazy_module("sys") is sys


def test_a_missing_module_fails_on_first_use_naming_it() -> None:
    missing = lazy_module("no_such_module_here")
    try:
        missing.anything  # noqa: B018
    except ModuleNotFoundError as error:
        assert "no_such_module_here" in str(error)
    else:
        raise AssertionError("no error for a module that does not exist")
