"""The root of every error polyai-sync raises on purpose, and whether re-running may help.

Each boundary keeps its own small family (declared where it is raised); builtin bases stay as
mixins, so ``except ValueError`` still catches bad input::

    PolyAISyncError
    ├── ConfigError (ValueError)             core.urls: a setting missing or malformed
    ├── ScopeError (ValueError)              core.windows: an environment or channel
    ├── QueryError (ValueError)              core.query: an API query that cannot be sent
    ├── RecordError (ValueError)             core.records: a record that cannot be a row
    ├── PaginationError (RuntimeError)       core.pagination: pages that do not advance
    ├── PolyAIError                          resources.polyai_errors: talking to the API
    │   ├── PolyAIHTTPError                  an error status
    │   │   ├── PolyAIAuthError              401/403: the key, ids or region
    │   │   ├── CursorRejectedError          400 on a cursor: the window restarts
    │   │   └── PolyAIUnavailableError *     429/5xx still, after every retry
    │   ├── PolyAIResponseError              a body that is not the documented shape
    │   └── PolyAITransportError *           unreachable, or timed out, after every retry
    ├── WarehouseError                       resources.warehouse: opening or writing
    │   ├── WarehouseBusyError *             another process held the file too long
    │   └── WarehouseSizeError               more than WAREHOUSE_MAX_MEMORY_MB allows
    ├── QuarantineThresholdError (RuntimeError)  sync.window: too many bad records
    ├── ForgetError (ValueError)             sync.forget: what to erase, given badly
    ├── LakeError (OSError)                  resources.lake: LAKE_URL's store cannot be opened
    ├── AlertDeliveryError *                 pipelines.alerts: the webhook did not take an alert
    │   └── AlertRefusedError                4xx: the alert is dropped
    └── UsageError (ValueError)              pipelines.cli: a bad command-line argument

``*``: *transient*, the same command may succeed later unchanged (the CLI says so); every
other error needs something changed first (a setting, the data, the API).
"""

from __future__ import annotations

from typing import Any, ClassVar

TRANSIENT_NOTE = " (transient: the same command may succeed later)"
"""What a failure's line ends with when running the same command again may succeed."""


class PolyAISyncError(Exception):
    """Base of every error polyai-sync raises on purpose."""

    transient: ClassVar[bool] = False
    """Whether running the same thing again, unchanged, may succeed."""

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its class, message and attributes, whatever its ``__init__`` takes: the
        sync's page feed raises in the sync an error its child process met."""
        return _rebuilt, (type(self), self.args, self.__dict__)


def _rebuilt(cls: type[PolyAISyncError], args: tuple[Any, ...], attributes: dict[str, Any]) -> Any:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(attributes)
    return error


def transient_error_names() -> frozenset[str]:
    """The class names of the transient errors defined so far: what a failure recorded by
    Dagster (which keeps the class name, not the class) is told apart by."""
    found: set[str] = set()
    pending = [PolyAISyncError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.transient:
            found.add(cls.__name__)
    return frozenset(found)
