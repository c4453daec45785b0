"""Counts the policies keep themselves (rate-limit refusals, failure-mode decisions, unpriced
requests, the spend ledger's journal and reservations), exported as metrics read at each scrape
instead of being counted twice. Part of the metrics catalog (:mod:`gateway.observability.metrics`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from gateway.state.ledger import LedgerStats


class LiveCounts(NamedTuple):
    """Counts the policies keep themselves, read at each scrape."""

    rejections: Mapping[str, int]
    """Rate-limit refusals by scope kind."""
    degraded: Mapping[str, int]
    """Decisions taken in a failure mode, by policy."""
    flush_failures: int
    unpriced: Mapping[tuple[str, str], int]
    """Requests to unpriced models, by (provider, model)."""
    ledger: LedgerStats = LedgerStats()
    """The spend ledger's journal, duplicate batches and budget reservations."""

    @classmethod
    def empty(cls) -> LiveCounts:
        return cls({}, {}, 0, {})


# name (without _total), help, labels: declared here, read from LiveCounts at scrape time.
LIVE_COUNTERS = (
    ("gateway_ratelimit_rejections", "Requests refused by a rate limit, by scope.", ("scope",)),
    (
        "gateway_degraded_decisions",
        "Decisions taken in a failure mode because the state backend was unreachable, by policy.",
        ("policy",),
    ),
    ("gateway_state_backend_errors", "State backend operations that failed, by operation.", ("operation",)),
    ("gateway_unpriced_requests", "Requests to a model with no price (not costed).", ("provider", "model")),
    (
        "gateway_spend_journal_writes",
        "Appends to the spend journal: one write each, per charged request or event-loop turn (embedded backend).",
        (),
    ),
    (
        "gateway_spend_journal_errors",
        "Spend journal failures: write (that spend is in memory only until flushed), unreadable (a line skipped).",
        ("kind",),
    ),
    (
        "gateway_spend_journal_replayed_batches",
        "Spend batches an earlier process left in the journal, replayed at start-up (each applied once).",
        (),
    ),
    (
        "gateway_spend_duplicate_batches",
        "Spend batches the state backend had applied already (a timed-out write, then its retry): not counted again.",
        (),
    ),
)
# name, help: gauges read from LiveCounts at scrape time.
LIVE_GAUGES = (
    ("gateway_budget_reservations", "Budget reservations held by requests in flight in this process."),
    ("gateway_budget_reserved_usd", "USD reserved on budgets by requests in flight in this process (each once)."),
)


class LiveCollector:
    """The metrics above, read from ``read()`` (the app's :class:`LiveCounts`) at each scrape."""

    def __init__(self, read: Callable[[], LiveCounts]) -> None:
        self._read = read

    def describe(self) -> list[CounterMetricFamily | GaugeMetricFamily]:
        counters = [CounterMetricFamily(name, text, labels=labels) for name, text, labels in LIVE_COUNTERS]
        return [*counters, *(GaugeMetricFamily(name, text) for name, text in LIVE_GAUGES)]

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        live = self._read()
        ledger = live.ledger
        values: dict[str, list[tuple[tuple[str, ...], float]]] = {
            "gateway_ratelimit_rejections": [((k,), float(v)) for k, v in live.rejections.items()],
            "gateway_degraded_decisions": [((k,), float(v)) for k, v in live.degraded.items()],
            "gateway_state_backend_errors": [(("spend_flush",), float(live.flush_failures))],
            "gateway_unpriced_requests": [((p, m), float(v)) for (p, m), v in live.unpriced.items()],
            "gateway_spend_journal_writes": [((), float(ledger.journal_writes))],
            "gateway_spend_journal_errors": [
                (("write",), float(ledger.journal_write_errors)),
                (("unreadable",), float(ledger.journal_unreadable_lines)),
            ],
            "gateway_spend_journal_replayed_batches": [((), float(ledger.journal_replayed))],
            "gateway_spend_duplicate_batches": [((), float(ledger.duplicate_batches))],
        }
        for name, text, labels in LIVE_COUNTERS:
            family = CounterMetricFamily(name, text, labels=labels)
            for label_values, value in values[name]:
                family.add_metric(list(label_values), value)
            yield family
        gauges = {
            "gateway_budget_reservations": float(ledger.reservations),
            "gateway_budget_reserved_usd": ledger.reserved_usd,
        }
        for name, text in LIVE_GAUGES:
            yield GaugeMetricFamily(name, text, value=gauges[name])
