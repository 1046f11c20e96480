"""Failure alerts: a sensor that tells a person, through a Slack-compatible incoming webhook
(``POLYAI_ALERT_WEBHOOK_URL``), when a run of this code location fails, when a check of
severity ERROR fails, and when a window that had failed is landed again.

It reads Dagster's run-status events (a run that failed or succeeded), each once: the sensor's
cursor keeps the last event read. For a run that ended it posts at most one message:

- failed: what ran (``sync`` for any run of the sync step, else the job), the windows it did
  not land grouped by scope (a backfill's run covers a range of windows: its tags), the reason
  in one line (:func:`pipelines.run_outcomes.run_failure`), failed ERROR checks, and the
  run's link in the UI, ``{DAGSTER_UI_URL}/runs/{run_id}``;
- succeeded, but a check of severity ERROR failed (the window checks): the checks and windows;
- succeeded for windows whose last run of the same kind had failed: "recovered".

The cursor also keeps the failing windows (what a recovery is told by) and the alerts not
delivered. A webhook that is down fails no tick: each evaluation (every 30 s) tries the kept
alerts again, oldest first, for up to a day, with a warning each time; an alert refused (4xx)
or a day old is dropped with an error in the sensor's log. Delivery is at least once (a tick
that dies after posting posts again). The first evaluation reads the last day's runs.

The webhook's URL is a secret (a Slack webhook's path is its key): bound as ``EnvVar``, kept out
of the resource's repr, and never put in a message, a log line, an error or the cursor. It is
posted to with the standard library, not httpx, whose client logs every request's URL.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    ConfigurableResource,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DefaultSensorStatus,
    EventLogRecord,
    MultiPartitionsDefinition,
    PartitionKeyRange,
    RunStatusChangeRecordsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from pydantic import Field

from core.errors import PolyAISyncError
from core.names import ALERT_SENSOR, CONVERSATIONS, SYNC_JOB
from pipelines.run_outcomes import run_failure

RUNS_PER_EVALUATION = 20
"""Run-status events read per evaluation (per status): bounds a tick after a long downtime."""
FIRST_LOOKBACK_SECONDS = KEEP_UNDELIVERED_SECONDS = 24 * 3600
MAX_KEPT_ALERTS = 100
DELIVERY_SECONDS_PER_TICK = 30.0  # within the daemon's sensor timeout, or posts repeat
MAX_FAILING_WINDOWS = 1000
"""Failing windows remembered for recoveries; the oldest are forgotten past this."""
_ENDED = (DagsterEventType.RUN_FAILURE, DagsterEventType.RUN_SUCCESS)
_RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


class AlertDeliveryError(PolyAISyncError):
    """The webhook did not take an alert (unreachable, timed out, 408/429/5xx); the message
    never holds the URL."""

    transient = True


class AlertRefusedError(AlertDeliveryError):
    """The webhook refused an alert (another 4xx, e.g. revoked): trying again will not help."""

    transient = False


class AlertWebhook(ConfigurableResource):
    """A Slack-compatible incoming webhook: a POST of JSON with ``text`` (and ``blocks``)."""

    url: str = Field(repr=False, description="the webhook's URL (secret; use EnvVar)")
    timeout_seconds: float = Field(default=10.0, gt=0)

    def post(self, message: Mapping[str, Any]) -> None:
        """Post one message; raise :class:`AlertDeliveryError` (never naming the URL)."""
        request = urllib.request.Request(
            self.url,
            data=json.dumps(message).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except Exception as exc:  # URLError, refused, reset, timed out, TLS, a bad response
            # Only the class: a message may quote the URL (the host's is not secret, its path
            # is). `from None`: a traceback of the original would show the request.
            cause = getattr(exc, "reason", exc)
            raise AlertDeliveryError(
                f"the alert webhook did not answer ({type(cause).__name__})"
            ) from None
        if 200 <= status < 300:
            return
        # Never the body: a receiver's error page may echo the path, which is the secret.
        retryable = status in (408, 429) or status >= 500
        error = AlertDeliveryError if retryable else AlertRefusedError
        raise error(f"the alert webhook answered HTTP {status}")


@dataclass
class AlertState:
    """What the sensor keeps between evaluations (its cursor, as JSON)."""

    after: int | None = None
    """The storage id of the last run-status event read (None: none read yet)."""
    since: float = 0.0
    """While ``after`` is None: read events from this time on (the first lookback)."""
    failing: dict[str, str] = field(default_factory=dict)
    """``job|window`` (window empty without partitions) -> the run that failed it, oldest first."""
    pending: list[dict[str, Any]] = field(default_factory=list)
    """Alerts not delivered yet: ``message``, ``run_id``, ``created`` (epoch seconds)."""

    @classmethod
    def from_cursor(cls, cursor: str | None, now: float) -> AlertState:
        """The state in ``cursor``; a new one (reading the last day) if none or unreadable."""
        try:
            return cls(**json.loads(cursor or ""))
        except (ValueError, TypeError):
            return cls(since=now - FIRST_LOOKBACK_SECONDS)

    def to_cursor(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    def fail(self, job: str, windows: Iterable[str], run_id: str) -> None:
        for window in windows:
            self.failing.pop(f"{job}|{window}", None)  # re-inserted as the newest
            self.failing[f"{job}|{window}"] = run_id
        for key in list(self.failing)[: max(0, len(self.failing) - MAX_FAILING_WINDOWS)]:
            del self.failing[key]

    def recover(self, job: str, windows: Iterable[str]) -> dict[str, str]:
        """Of ``windows``, those that were failing, with the run that failed each."""
        keys = {window: f"{job}|{window}" for window in windows}
        return {w: self.failing.pop(key) for w, key in keys.items() if key in self.failing}


def build_alert_sensor(partitions_def: MultiPartitionsDefinition, ui_url: str) -> SensorDefinition:
    """The alert sensor: every 30 s under the daemon (``dagster dev`` runs one), posting
    through the ``alert_webhook`` resource; run links under ``ui_url``."""

    @sensor(
        name=ALERT_SENSOR,
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Post to the alert webhook (POLYAI_ALERT_WEBHOOK_URL) when a run fails, a check of "
            "severity ERROR fails, or a window that had failed is landed again."
        ),
    )
    def polyai_failure_alerts(
        context: SensorEvaluationContext, alert_webhook: AlertWebhook
    ) -> SensorResult:
        now = time.time()
        state = AlertState.from_cursor(context.cursor, now)
        records = _ended_runs(context.instance, state)
        for record in records:
            run = context.instance.get_run_by_id(record.event_log_entry.run_id)
            if run is not None and _same_location(context, run):
                try:
                    message = _alert(context.instance, run, record, state, partitions_def, ui_url)
                except Exception:  # not stuck at one run forever: its link, at least, is told
                    context.log.exception(f"run {run.run_id}: its events could not be read")
                    message = slack_message(
                        f"polyai-sync: {run_label(run)} ended {run.status.value}",
                        ["Its events could not be read: see the sensor's log."],
                        f"{ui_url}/runs/{run.run_id}",
                    )
                if message is not None:
                    state.pending.append({"message": message, "run_id": run.run_id, "created": now})
            state.after = record.storage_id
        summary = _deliver(alert_webhook, state, context, now)
        return SensorResult(
            skip_reason=SkipReason(f"{len(records)} ended run(s) read; {summary}"),
            cursor=state.to_cursor(),
        )

    return polyai_failure_alerts


def _ended_runs(instance: DagsterInstance, state: AlertState) -> list[EventLogRecord]:
    """The run-status events (failed, succeeded) after the cursor, oldest first; when either
    status has more than a tick's share, only up to where both are complete."""
    batches = []
    for event_type in _ENDED:
        records_filter = (
            RunStatusChangeRecordsFilter(event_type, after_timestamp=state.since)
            if state.after is None
            else RunStatusChangeRecordsFilter(event_type, after_storage_id=state.after)
        )
        batches.append(
            instance.fetch_run_status_changes(
                records_filter, limit=RUNS_PER_EVALUATION, ascending=True
            ).records
        )
    full = [batch[-1].storage_id for batch in batches if len(batch) == RUNS_PER_EVALUATION]
    bound = min(full, default=None)
    records = [r for batch in batches for r in batch if bound is None or r.storage_id <= bound]
    return sorted(records, key=lambda r: r.storage_id)


def _same_location(context: SensorEvaluationContext, run: DagsterRun) -> bool:
    """Whether ``run`` is of this sensor's code location (either outside one, as in tests: yes)."""
    origin = context.code_location_origin
    if origin is None or run.remote_job_origin is None:
        return True
    return run.remote_job_origin.location_name == origin.location_name


def _alert(
    instance: DagsterInstance,
    run: DagsterRun,
    record: EventLogRecord,
    state: AlertState,
    partitions_def: MultiPartitionsDefinition,
    ui_url: str,
) -> dict[str, Any] | None:
    """The message for one ended run (None: nothing to tell), the failing windows updated."""
    windows = run_windows(run, partitions_def) or [""]
    failed: list[str] = []
    if record.event_log_entry.dagster_event_type == DagsterEventType.RUN_FAILURE:
        landed = _landed_windows(instance, run.run_id)
        # The windows it did not land; all of them when it landed each but a later step failed.
        failed = [w for w in windows if w not in landed] or windows
    what = run_label(run)
    recovered = state.recover(what, [w for w in windows if w not in failed])
    state.fail(what, failed, run.run_id)
    lines = []
    if failed:
        _, reason = run_failure(instance, run.run_id)
        lines.append(f"Reason: {_one_line(reason)}")
    if recovered:
        where = describe_windows(recovered)
        before = ", ".join(sorted({run_id[:8] for run_id in recovered.values()}))
        lines.append(f"Recovered: {where or what} succeeded again; it had failed in run {before}.")
    lines.extend(_failed_checks(instance, run.run_id))
    if not lines:
        return None
    if failed:
        where = describe_windows(failed)
        headline = f"polyai-sync: {what} failed" + (f" for {where}" if where else "")
    else:
        headline = f"polyai-sync: {what} " + ("recovered" if recovered else "checks failed")
    return slack_message(headline, lines, f"{ui_url}/runs/{run.run_id}")


def run_label(run: DagsterRun) -> str:
    """What a run was, for people and for telling its windows' recoveries: ``sync`` for a run
    of the sync step (the nightly job, or a backfill's run of the implicit asset job, as
    ``polyai-sync sync`` makes), else its job, or the assets of an implicit asset job's run."""
    assets = run.asset_selection or frozenset()
    if run.job_name == SYNC_JOB or AssetKey(CONVERSATIONS) in assets:
        return "sync"
    if not run.job_name.startswith("__") or not assets:
        return run.job_name
    return ", ".join(sorted(key.to_user_string() for key in assets))


def run_windows(run: DagsterRun, partitions_def: MultiPartitionsDefinition) -> list[str]:
    """The partition keys (``date|scope``) a run was for: its partition, or the range a
    backfill gave it; none for a run without partitions."""
    if single := run.tags.get("dagster/partition"):
        return [single]
    start, end = (run.tags.get(tag) for tag in _RANGE_TAGS)
    if not (start and end):
        return []
    try:
        return list(partitions_def.get_partition_keys_in_range(PartitionKeyRange(start, end)))
    except Exception:  # a range of other settings (scopes since removed): its two ends
        return sorted({start, end})


def _landed_windows(instance: DagsterInstance, run_id: str) -> set[str]:
    """The windows the run materialized something for (the sync's landed windows)."""
    return {
        str(record.dagster_event.partition)
        for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
        if record.dagster_event is not None and record.dagster_event.partition
    }


def _failed_checks(instance: DagsterInstance, run_id: str, most: int = 5) -> list[str]:
    """The run's failed ERROR checks: a count, a line each (``most``, then how many more)."""
    lines = []
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        event = record.dagster_event
        evaluation = event.event_specific_data if event is not None else None
        if (
            isinstance(evaluation, AssetCheckEvaluation)
            and not evaluation.passed
            and evaluation.severity == AssetCheckSeverity.ERROR
        ):
            text = evaluation.description or "failed"
            if evaluation.partition and evaluation.partition not in text:
                text = f"{evaluation.partition}: {text}"
            where = evaluation.asset_key.to_user_string()
            lines.append(_one_line(f"Check {evaluation.check_name} on {where}: {text}"))
    if not lines:
        return []
    more = [f"... and {len(lines) - most} more"] if len(lines) > most else []
    return [f"{len(lines)} check(s) of severity ERROR failed:", *lines[:most], *more]


def describe_windows(keys: Iterable[str]) -> str:
    """``date|scope`` keys as people read them: ``live.voice 2026-11-20, 2026-11-21;
    live.chat 2026-11-20`` (a long run of one scope as its first, last and count)."""
    by_scope: dict[str, list[str]] = {}
    for key in sorted(k for k in keys if k):
        day, _, scope = key.partition("|")
        by_scope.setdefault(scope, []).append(day)
    parts = []
    for scope, days in by_scope.items():
        shown = ", ".join(days) if len(days) <= 7 else f"{days[0]} .. {days[-1]} ({len(days)})"
        parts.append(f"{scope} {shown}".strip())
    return "; ".join(parts)


def slack_message(headline: str, lines: list[str], link: str) -> dict[str, Any]:
    """Incoming-webhook JSON: ``text`` for any receiver (Slack's notification, Teams), and
    the same as Slack ``blocks``: the headline in bold, the lines, a link to the run."""
    text = "\n".join([headline, *lines, f"Run: {link}"])
    detail = _mrkdwn("\n".join(lines))[:2500]
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{_mrkdwn(headline)}*"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": detail or " "}},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"<{link}|Open the run in Dagster>"}],
            },
        ],
    }


def _mrkdwn(text: str) -> str:
    """Slack's three control characters escaped, so a reason cannot become a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _one_line(text: str, most: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= most else line[: most - 3] + "..."


def _deliver(
    webhook: AlertWebhook, state: AlertState, context: SensorEvaluationContext, now: float
) -> str:
    """Post the kept alerts, oldest first, until one fails; what happened, in a few words."""
    log = context.log
    kept = []
    for alert in state.pending:
        if now - alert["created"] > KEEP_UNDELIVERED_SECONDS:
            log.error(f"alert dropped, not delivered for a day: {_headline(alert)}")
        else:
            kept.append(alert)
    for alert in kept[:-MAX_KEPT_ALERTS]:
        log.error(f"alert dropped, {MAX_KEPT_ALERTS} newer ones are waiting: {_headline(alert)}")
    queue = kept[-MAX_KEPT_ALERTS:]
    posted, problem = 0, ""
    deadline = time.monotonic() + DELIVERY_SECONDS_PER_TICK
    while queue and time.monotonic() < deadline:
        try:
            webhook.post(queue[0]["message"])
        except AlertRefusedError as exc:
            log.error(f"alert dropped, {exc}: {_headline(queue[0])}")
        except AlertDeliveryError as exc:
            problem = str(exc)
            log.warning(f"{problem}: {len(queue)} alert(s) kept, to be tried at the next tick")
            break
        else:
            posted += 1
            log.info(f"alert posted: {_headline(queue[0])}")
        queue.pop(0)
    state.pending = queue
    problem = problem or "out of time for this tick"
    return f"{posted} alert(s) posted" + (f"; {len(queue)} kept: {problem}" if queue else "")


def _headline(alert: Mapping[str, Any]) -> str:
    return str(alert["message"]["text"]).split("\n", 1)[0] + f" (run {alert['run_id']})"
