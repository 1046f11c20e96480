"""One error root (:mod:`core.errors`): every error the project defines derives from it, keeps
its builtin base, and says whether re-running unchanged may help."""

import importlib
import inspect
import pkgutil

import pytest

from core.errors import PolyAISyncError, transient_error_names

PACKAGES = ("core", "resources", "sync", "assets", "pipelines")
PRIVATE = {"_Transient"}  # the client's retry signal: never leaves the client


def _error_classes() -> list[type[BaseException]]:
    found = []
    for package in PACKAGES:
        for module in pkgutil.walk_packages([package], prefix=f"{package}."):
            loaded = importlib.import_module(module.name)
            found += [
                cls
                for _, cls in inspect.getmembers(loaded, inspect.isclass)
                if issubclass(cls, BaseException)
                and cls.__module__ == loaded.__name__
                and cls.__name__ not in PRIVATE
            ]
    return found


def test_every_error_the_project_defines_derives_from_the_root() -> None:
    classes = _error_classes()
    assert len(classes) >= 15
    assert [c.__name__ for c in classes if not issubclass(c, PolyAISyncError)] == []


@pytest.mark.parametrize(
    ("name", "builtin"),
    [("ConfigError", ValueError), ("QueryError", ValueError), ("UsageError", ValueError),
     ("PaginationError", RuntimeError), ("QuarantineThresholdError", RuntimeError)],
)  # fmt: skip
def test_builtin_bases_stay_as_mixins(name: str, builtin: type[Exception]) -> None:
    (cls,) = [c for c in _error_classes() if c.__name__ == name]
    assert issubclass(cls, builtin) and issubclass(cls, PolyAISyncError)


def test_only_what_may_pass_by_itself_is_transient() -> None:
    _error_classes()  # every module imported, so every subclass is known
    assert transient_error_names() == {
        "PolyAIUnavailableError",
        "PolyAITransportError",
        "WarehouseBusyError",
        "AlertDeliveryError",  # a webhook that is down: the alert is tried again
    }


def test_an_error_crosses_a_process_boundary_as_itself() -> None:
    """The page feed's child process raises in the sync what it met: pickled whole, whatever
    the class's ``__init__`` takes."""
    import pickle

    from resources.polyai_errors import CursorRejectedError, PolyAIAuthError

    for error in (CursorRejectedError(400, "cursor expired", "q"), PolyAIAuthError(401, "no", "q")):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert (copy.status, copy.detail) == (error.status, error.detail)
