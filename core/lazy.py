"""Modules imported when first used, not when the module naming them is.

pandas, pyarrow and numpy take about half a second to import, and every process that loads
the code location pays for whatever its modules import at the top: the webserver, the
daemon, each run's process, every ``polyai-sync`` command. The definitions need none of them;
the steps do. A module that uses one writes::

    if TYPE_CHECKING:
        import pyarrow as pa
    else:
        pa = lazy_module("pyarrow")

and imports it on its first ``pa.<name>``, where that is.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class _LazyModule(types.ModuleType):
    """Stands in for a module until an attribute is asked for, then takes on its contents."""

    def __getattr__(self, name: str) -> Any:
        module = importlib.import_module(self.__name__)
        # Later lookups find the contents here and never come back to this method.
        self.__dict__.update(module.__dict__)
        return getattr(module, name)


def lazy_module(name: str) -> types.ModuleType:
    """``name``, imported on the first attribute looked up on what this returns (at once, if
    it is imported already)."""
    if name in sys.modules:
        return sys.modules[name]
    return _LazyModule(name)
