"""Proof with the real programs: the stack of scripts/stack.py (redis-server, the mock upstream,
two gateway replicas, nginx, Prometheus with the project's rules, Alertmanager with its config)
under traffic with injected upstream errors and slow answers.

- every dashboard panel's query returns data from the real Prometheus (the few that cannot in a
  one-minute run are listed in ALLOWED_EMPTY with the reason, and must stay empty);
- the chosen alerts go pending, then firing;
- Alertmanager delivers them to the right receivers with the configured grouping, inhibits each
  warning while the critical of its family fires, and sends the resolution.

Time is compressed by the documented transformation of scripts/stack.py (``--time-scale``,
tests/live_stack.TIME_SCALE = 60): every ``for:`` and range of the rules and every Alertmanager
timer is divided by 60, so ``for: 5m`` over ``rate(...[5m])`` becomes ``for: 5s`` over
``rate(...[5s])``; thresholds, labels and the rest of every expression are the real ones. Latency
thresholds are seconds of real request time, so the slow answers really take 6 s.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from scripts.stack import Stack
from scripts.stack_sink import AlertSink, Notification
from tests.e2e.harness import wait_until
from tests.live_stack import (
    MASTER_KEY,
    Alertmanager,
    PanelQuery,
    Prometheus,
    Traffic,
    chat,
    dashboard_queries,
    dashboard_variables,
    has_value,
    live_stack,
    postgres_panels,
    substitute,
)

pytestmark = pytest.mark.timeout(180)

PROGRAMS = {
    "prometheus": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "redis-server": "redis-server",
    "nginx": "nginx-light",
}
SLOW_MS = 6000  # above the 5 s critical average-latency threshold
PHASE_TIMEOUT_S = 40.0
SETTLE_S = 2.0  # two warning group_waits (1 m / 60): an uninhibited warning would have been sent

# Panels (dashboard, title, refId) that cannot show data in this run, and why. Each must stay
# empty: if it gets data, remove it from here.
ALLOWED_EMPTY = {
    ("cost.json", "Upstream-reported cost vs the gateway's", "A"): (
        "no upstream of this run reports its own cost (usage.cost): the mock does not"
    ),
    ("cost.json", "Daily spend forecast", "B"): (
        "predict_linear over a 6 h subquery with a 5 min step needs two steps of spend history (5 minutes or "
        "more), longer than this run"
    ),
    **{
        q.key: "the stack runs the redis shape; tests/e2e/test_postgres_live.py checks it on a gateway on PostgreSQL"
        for q in postgres_panels()
    },
}

CRITICAL_ERRORS, WARNING_ERRORS = "GatewayErrorRateCritical", "GatewayHighErrorRate"
CRITICAL_LATENCY, WARNING_LATENCY = "GatewayLatencyCritical", "GatewayHighLatency"
BREAKER = "GatewayBreakerOpen"


@dataclass
class Run:
    stack: Stack
    prometheus: Prometheus
    alertmanager: Alertmanager
    sink: AlertSink
    started_at: float
    states: dict[str, list[str]] = field(default_factory=dict)
    """alertname -> the states /api/v1/alerts showed, in order (repeats dropped)."""
    inhibitions: dict[str, set[str]] = field(default_factory=dict)
    """alertname -> the alertnames Alertmanager said inhibit it."""
    settled: dict[str, float] = field(default_factory=dict)
    """phase -> when its conditions held and SETTLE_S had passed."""
    phases_met: dict[str, bool] = field(default_factory=dict)

    def observe(self) -> None:
        now = self.prometheus.alert_states()
        for name in self.states.keys() - now.keys():
            now[name] = "inactive"  # resolved: no longer listed
        for name, state in now.items():
            seen = self.states.setdefault(name, [])
            if not seen or seen[-1] != state:
                seen.append(state)
        for name, by in self.alertmanager.inhibited().items():
            self.inhibitions.setdefault(name, set()).update(by)

    def firing(self, name: str) -> bool:
        return self.states.get(name, [""])[-1] == "firing"

    def notified(self, receiver: str, alertname: str, status: str = "firing") -> list[Notification]:
        return [
            n
            for n in self.sink.notifications()
            if n.path == f"/{receiver}" and n.body.get("status") == status and alertname in n.alertnames()
        ]

    def wait(self, phase: str, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        met = False
        while time.monotonic() < deadline:
            self.observe()
            if condition():
                met = True
                break
            time.sleep(0.25)
        self.phases_met[phase] = met
        if met:  # keep watching while the condition holds: a wrongly routed warning would arrive now
            end = time.monotonic() + SETTLE_S
            while time.monotonic() < end:
                self.observe()
                time.sleep(0.25)
        self.settled[phase] = time.time()

    def diagnostics(self) -> str:
        sent = [f"{n.path} {n.body.get('status')} {sorted(n.alertnames())}" for n in self.sink.notifications()]
        return f"alert states: {self.states}\ninhibitions: {self.inhibitions}\nnotifications: {sent}"


class Gateway:
    """The front door (nginx) and the mock's control API."""

    def __init__(self, stack: Stack) -> None:
        self.http = httpx.Client(
            base_url=stack.gateway_url, timeout=30, trust_env=False, headers={"authorization": f"Bearer {MASTER_KEY}"}
        )
        self.mock = httpx.Client(base_url=stack.url("mock"), timeout=10, trust_env=False)

    def chat(self, body: dict[str, object], key: str = MASTER_KEY) -> httpx.Response:
        return self.http.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})

    def behave(self, model: str, **knobs: object) -> None:
        self.mock.put(f"/_mock/behaviours/{model}", json=knobs).raise_for_status()

    def normal(self, model: str) -> None:
        self.mock.delete(f"/_mock/behaviours/{model}").raise_for_status()

    def close(self) -> None:
        self.http.close()
        self.mock.close()


def drive_every_feature(gw: Gateway) -> None:
    """A little of everything the dashboards show: each route and wire format, streams, the
    cache, a team over its budget, a key over its rate limit, bad credentials, a retry and a
    fallback, a truncated stream."""
    for model in ("demo-gpt", "demo-gpt", "demo-claude", "demo-gemini"):
        assert gw.chat(chat(model)).status_code == 200
    # A model with no price, added at runtime through the admin API: counted as unpriced, never
    # costed at $0; both replicas pick it up from Redis within their refresh interval.
    unpriced = {
        "name": "live-unpriced",
        "deployments": [{"provider": "openai_compatible", "model": "mock-unpriced", "base_url": "${MOCK_BASE_URL}/v1"}],
    }
    created = gw.http.post("/admin/models", json=unpriced)
    assert created.status_code == 201, created.text
    assert wait_until(lambda: all(gw.chat(chat("live-unpriced")).status_code == 200 for _ in range(4)), timeout=15)
    for model in ("demo-gpt", "demo-claude"):
        stream = gw.chat(chat(model, stream=True, stream_options={"include_usage": True}))
        assert stream.status_code == 200 and "[DONE]" in stream.text
    for _ in range(2):
        embedded = gw.http.post("/v1/embeddings", json={"model": "demo-embed", "input": "live"})
        assert embedded.status_code == 200, embedded.text
    first = gw.chat(chat("demo-gpt", "cache me", temperature=0)).headers.get("x-gateway-cache")
    assert first == "miss", first
    # The answer is stored in the cache after it is sent (settlement.py ``end``): the same request at
    # once, through the other replica, may still miss; it hits as soon as the store has landed.
    seen: list[str | None] = []

    def hit() -> bool:
        seen.append(gw.chat(chat("demo-gpt", "cache me", temperature=0)).headers.get("x-gateway-cache"))
        return seen[-1] == "hit"

    assert wait_until(hit, timeout=5, interval=0.1), seen

    team = gw.http.post("/admin/teams", json={"id": "live-team", "budget_daily_usd": 0.000001})
    assert team.status_code == 201, team.text
    team_key = gw.http.post("/admin/keys", json={"name": "live-team-key", "team": "live-team"}).json()["key"]
    limited_key = gw.http.post("/admin/keys", json={"name": "live-limited", "rpm": 1}).json()["key"]
    team_statuses = [gw.chat(chat("demo-gpt", f"team {i}"), key=team_key).status_code for i in range(3)]
    assert team_statuses[0] == 200 and 429 in team_statuses, team_statuses  # the tiny budget runs out
    limited = [gw.chat(chat("demo-gpt", f"limited {i}"), key=limited_key).status_code for i in range(3)]
    assert 429 in limited, limited
    assert gw.chat(chat("demo-gpt"), key="sk-gw-not-a-real-key-live-0001").status_code == 401

    # Every call fails while this lasts (a count of failures could be eaten by a health probe
    # landing in between): the attempt and its retry fail, and the alias falls back.
    gw.behave("mock-gpt", fail_times=1000, error_status=500)
    fallback = gw.chat(chat("demo-gpt", "fall back"))
    gw.normal("mock-gpt")
    assert fallback.status_code == 200 and fallback.headers.get("x-gateway-fallback"), fallback.headers
    gw.behave("mock-gpt", disconnect_after_chunks=1)
    truncated = gw.chat(chat("demo-gpt", "cut me off", stream=True))
    assert truncated.status_code == 200 and "[DONE]" not in truncated.text
    gw.normal("mock-gpt")
    drive_traffic_shaping(gw)
    for job in ("retention", "security_review"):  # scheduled jobs, run by hand (their clock time is a leap day)
        ran = gw.http.post(f"/admin/jobs/{job}/run")
        assert ran.status_code == 200 and ran.json()["last_outcome"] == "ok", ran.text
    drive_feedback(gw)


def drive_feedback(gw: Gateway) -> None:
    """User satisfaction: a client scores two of its requests (4 and 5 of 5) a few scrapes apart
    (a 7-day increase needs the counter to grow between samples), and a bad score is refused."""
    key = gw.http.post("/admin/keys", json={"name": "live-feedback"}).json()["key"]
    auth = {"authorization": f"Bearer {key}"}
    for n, score in enumerate((4, 5)):
        answer = gw.http.post("/v1/chat/completions", json=chat("demo-gpt", f"rate me {n}"), headers=auth)
        request_id = answer.headers["x-request-id"]

        def scored(request_id: str = request_id, score: int = score) -> bool:
            # the request's owner record is written behind (another replica may be asked first)
            body = {"request_id": request_id, "score": score}
            return gw.http.post("/v1/feedback", json=body, headers=auth).status_code == 200

        assert wait_until(scored, timeout=15, interval=0.5)
        time.sleep(2.5)
    bad = gw.http.post("/v1/feedback", json={"request_id": request_id, "score": 9}, headers=auth)
    assert bad.status_code == 400


def drive_traffic_shaping(gw: Gateway) -> None:
    """The admission queue (a key allowed one request at a time sends three: one waits its
    turn, one that may wait 0.2 s only is shed), an upstream pacing its deployment (429 with
    Retry-After), and routing rules stored through the admin API: a match on a header, and
    every request of live-unpriced shadowed to demo-claude (priced)."""
    one = gw.http.post("/admin/keys", json={"name": "live-one-at-a-time", "max_concurrent": 1}).json()["key"]
    gw.behave("mock-gemini", latency_ms=500)
    url = str(gw.http.base_url) + "/v1/chat/completions"

    def send(text: str, **headers: str) -> httpx.Response:
        auth = {"authorization": f"Bearer {one}", **headers}
        return httpx.post(url, json=chat("demo-gemini", text), headers=auth, timeout=30, trust_env=False)

    # rounds a scrape apart: a replica's wait histogram must grow between two samples to have a rate
    for turn in range(4):
        if turn == 3:  # the holder outlasts the shed request's 0.2 s by far, whichever replica either lands on
            gw.behave("mock-gemini", latency_ms=1500)
        # a thread for each request: the one that gives up is sent while the holder holds the slot (with
        # three, it waited for the holder's thread and raced the waiters for the slot the holder freed)
        with ThreadPoolExecutor(4) as pool:
            holder = pool.submit(send, f"hold {turn}")
            time.sleep(0.2)
            waiters = [pool.submit(send, f"wait {turn} {i}") for i in range(2)]
            if turn == 3:
                time.sleep(0.1)
                shed = pool.submit(send, "give up", **{"x-gateway-max-wait": "0.2"}).result()
                seen = f"{shed.status_code} {dict(shed.headers)} holder done: {holder.done()}"
                assert not holder.done(), seen
                assert shed.status_code == 429 and shed.headers["x-gateway-queue"] in ("timeout", "deadline"), seen
            assert all(f.result().status_code == 200 for f in [holder, *waiters])
        time.sleep(1.1)
    gw.normal("mock-gemini")

    paced = {
        "name": "live-paced",
        "deployments": [{"provider": "openai_compatible", "model": "mock-paced", "base_url": "${MOCK_BASE_URL}/v1"}],
    }
    assert gw.http.post("/admin/models", json=paced).status_code == 201
    assert wait_until(lambda: all(gw.chat(chat("live-paced")).status_code == 200 for _ in range(4)), timeout=15)
    for _ in range(2):  # each replica behind nginx: the 429 paces the deployment, the retry after the pause is served
        gw.behave("mock-paced", error_status=429, retry_after=1, fail_times=1)
        assert gw.chat(chat("live-paced", "paced")).status_code == 200
    gw.normal("mock-paced")

    rules = [
        {
            "name": "live-header",
            "alias": "live-unpriced",
            "kind": "match",
            "when": {"header": {"x-live-route": "gpt"}},
            "to": "demo-gpt",
        },
        {"name": "live-shadow", "alias": "live-unpriced", "kind": "shadow", "to": "demo-claude", "share": 1.0},
    ]
    assert gw.http.put("/admin/routing-rules", json={"rules": rules}).status_code == 200

    def routed() -> bool:
        resp = gw.http.post("/v1/chat/completions", json=chat("live-unpriced"), headers={"x-live-route": "gpt"})
        route: str = resp.headers.get("x-gateway-route", "")
        return route.startswith("rule=live-header;")

    assert wait_until(lambda: all(routed() for _ in range(4)), timeout=15)  # both replicas have the rules
    for _ in range(4):
        assert gw.chat(chat("live-unpriced", "shadow me")).status_code == 200
    assert gw.http.delete("/admin/routing-rules").status_code == 200


def errors_phase(run: Run, gw: Gateway) -> None:
    """Half the requests fail upstream (demo-claude answers 500, retried once, then its breaker
    opens): the 5xx share is far above both thresholds."""
    gw.behave("mock-claude", error_status=500)

    def send(client: httpx.Client, n: int) -> None:  # the good half streams: time to first token
        body = chat("demo-claude") if n % 2 else chat("demo-gpt", stream=True, stream_options={"include_usage": True})
        client.post("/v1/chat/completions", json=body)

    traffic = Traffic(str(gw.http.base_url), send, workers=3, pause_s=0.05)
    try:
        run.wait(
            "errors",
            lambda: (
                run.firing(CRITICAL_ERRORS)
                and run.firing(WARNING_ERRORS)
                and CRITICAL_ERRORS in run.inhibitions.get(WARNING_ERRORS, set())
                and bool(run.notified("pager", CRITICAL_ERRORS))
                and bool(run.notified("email", CRITICAL_ERRORS))
                and bool(run.notified("slack", BREAKER))
            ),
        )
    finally:
        traffic.stop(join_s=10)
        gw.normal("mock-claude")


def latency_phase(run: Run, gw: Gateway) -> Traffic:
    """Only slow requests (6 s each, twelve at a time, completing every half second): the average
    latency is above both thresholds, and the 5xx share falls to zero (the error alerts resolve)."""
    gw.behave("mock-gemini", latency_ms=SLOW_MS)

    def send(client: httpx.Client, n: int) -> None:
        client.post("/v1/chat/completions", json=chat("demo-gemini"))

    traffic = Traffic(str(gw.http.base_url), send, workers=12, stagger_s=SLOW_MS / 12 / 1000)
    run.wait(
        "latency",
        lambda: (
            run.firing(CRITICAL_LATENCY)
            and run.firing(WARNING_LATENCY)
            and CRITICAL_LATENCY in run.inhibitions.get(WARNING_LATENCY, set())
            and bool(run.notified("pager", CRITICAL_LATENCY))
            and bool(run.notified("pager", CRITICAL_ERRORS, status="resolved"))
        ),
    )
    return traffic


def wait_for_first_scrapes(prometheus: Prometheus) -> None:
    """Until Prometheus has scraped both replicas: a counter's first increase is seen only when a
    sample from before it exists."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if len(prometheus.query('up{job="gateway"} == 1')) == 2:
            return
        time.sleep(0.2)
    raise AssertionError("Prometheus did not scrape both gateway replicas within 20 s")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    missing = [f"{exe} (Debian package {pkg})" for exe, pkg in PROGRAMS.items() if shutil.which(exe) is None]
    if missing and not Path("/usr/sbin/nginx").exists():
        pytest.skip(f"not installed: {', '.join(missing)}; `make test` installs them (scripts/install-os-deps.sh)")
    with AlertSink() as sink:
        stack = live_stack(tmp_path_factory.mktemp("stack"), sink.url)
        traffic: Traffic | None = None
        gw: Gateway | None = None
        prometheus = alertmanager = None
        try:
            stack.up()
            gw = Gateway(stack)
            prometheus, alertmanager = Prometheus(stack.url("prometheus")), Alertmanager(stack.url("alertmanager"))
            result = Run(stack, prometheus, alertmanager, sink, started_at=time.time())
            wait_for_first_scrapes(prometheus)
            drive_every_feature(gw)
            errors_phase(result, gw)
            traffic = latency_phase(result, gw)
            yield result
        finally:
            if traffic is not None:
                traffic.stop()
            stack.down()
            if traffic is not None:
                traffic.stop(join_s=10)  # their requests ended with the gateways
            for client in (gw, prometheus, alertmanager):
                if client is not None:
                    client.close()


# --- traces: the stack's trace backend ----------------------------------------------------------


def test_both_gateways_traces_reach_the_stacks_trace_backend(run: Run) -> None:
    """Requests went through nginx to both replicas; their spans arrived over OTLP."""
    spans = run.sink.spans()
    servers = [x for x in spans if x["name"] == "chat demo-gpt" and x["kind"] == 2]  # SPAN_KIND_SERVER
    assert {x["service"] for x in servers} == {"gateway-1", "gateway-2"}, {x["service"] for x in spans}
    ids = {x["span_id"] for x in servers}
    attempts = [x for x in spans if x["kind"] == 3 and x["parent_id"] in ids]  # SPAN_KIND_CLIENT
    assert attempts, "each request span has its upstream attempts as children"
    assert all(x["attributes"].get("gen_ai.operation.name") == "chat" for x in servers)


# --- (a) the dashboards ------------------------------------------------------------------------


def panel_has_data(run: Run, query: PanelQuery, now: float) -> bool:
    expr = substitute(query.expr, range_s=int(now - run.started_at) + 30)
    if query.instant:
        return has_value(run.prometheus.query(expr, at=now))
    return has_value(run.prometheus.query_range(expr, run.started_at, now, step=1))


def test_every_dashboard_panel_query_returns_data(run: Run) -> None:
    now = time.time()
    queries = list(dashboard_queries())
    assert len(queries) > 40, "the dashboards were not found"
    results = {q.key: panel_has_data(run, q, now) for q in queries}
    unexpected = [f"{b}: {t} ({r})" for (b, t, r), ok in results.items() if not ok and (b, t, r) not in ALLOWED_EMPTY]
    assert not unexpected, f"panels without data: {unexpected}\n{run.diagnostics()}"
    stale = [key for key in ALLOWED_EMPTY if results.get(key) is not False]
    assert not stale, f"listed in ALLOWED_EMPTY but has data now (or no longer exists): {stale}"


def test_every_dashboard_variable_has_values(run: Run) -> None:
    for board, name, metric, label in dashboard_variables():
        assert run.prometheus.label_values(label, metric), f"{board}: variable ${name} has no values"


# --- (b) the alerts --------------------------------------------------------------------------


@pytest.mark.parametrize("alertname", [CRITICAL_ERRORS, WARNING_ERRORS, CRITICAL_LATENCY, WARNING_LATENCY, BREAKER])
def test_alert_went_pending_then_firing(run: Run, alertname: str) -> None:
    """Prometheus keeps each state in the ALERTS series: pending first, firing after ``for``."""
    now = time.time()

    def first(state: str) -> float | None:
        result = run.prometheus.query_range(
            f'ALERTS{{alertname="{alertname}", alertstate="{state}"}}', run.started_at, now, step=1
        )
        times = [float(t) for series in result for t, _ in series["values"]]
        return min(times) if times else None

    pending, firing = first("pending"), first("firing")
    assert pending is not None, f"{alertname} was never pending\n{run.diagnostics()}"
    assert firing is not None, f"{alertname} never fired\n{run.diagnostics()}"
    assert pending < firing
    assert "firing" in run.states.get(alertname, []), "/api/v1/alerts never showed it firing"


# --- (c) Alertmanager ----------------------------------------------------------------------------


def test_phases_reached_their_conditions(run: Run) -> None:
    assert run.phases_met == {"errors": True, "latency": True}, run.diagnostics()


@pytest.mark.parametrize(("alertname", "family"), [(CRITICAL_ERRORS, "errors"), (CRITICAL_LATENCY, "latency")])
def test_critical_pages_and_mails_grouped_by_alert(run: Run, alertname: str, family: str) -> None:
    for receiver in ("pager", "email"):
        sent = run.notified(receiver, alertname)
        assert sent, f"{receiver} got no {alertname}\n{run.diagnostics()}"
        body = sent[0].body
        assert body["receiver"] == receiver
        # group_by: alertname, severity, family, team, deployment, alias (the absent ones drop out).
        assert body["groupLabels"] == {"alertname": alertname, "severity": "critical", "family": family}
        assert [a["labels"]["job"] for a in body["alerts"]] == ["gateway"]  # one alert per job
    assert not run.notified("slack", alertname), "a critical alert went to the warning channel"


def test_warning_goes_to_slack_and_email_grouped_by_deployment(run: Run) -> None:
    for receiver in ("slack", "email"):
        sent = run.notified(receiver, BREAKER)
        assert sent, f"{receiver} got no {BREAKER}\n{run.diagnostics()}"
        group = sent[0].body["groupLabels"]
        assert group["alertname"] == BREAKER and group["severity"] == "warning"
        deployments = {a["labels"]["deployment"] for a in sent[0].body["alerts"]}
        assert deployments == {group["deployment"]}, "one notification group per deployment"
    assert not run.notified("pager", BREAKER)


@pytest.mark.parametrize(
    ("warning", "critical", "phase"),
    [(WARNING_ERRORS, CRITICAL_ERRORS, "errors"), (WARNING_LATENCY, CRITICAL_LATENCY, "latency")],
)
def test_warning_inhibited_while_its_critical_fires(run: Run, warning: str, critical: str, phase: str) -> None:
    assert critical in run.inhibitions.get(warning, set()), run.diagnostics()
    # While the critical fired the warning fired too and was never sent (checked up to SETTLE_S
    # after both fired; it may be sent later, once the critical resolves before it).
    early = [
        n
        for receiver in ("slack", "email")
        for n in run.notified(receiver, warning)
        if n.received_at <= run.settled[phase]
    ]
    assert not early, f"{warning} was notified while {critical} fired: {early}"


def test_resolution_is_notified(run: Run) -> None:
    resolved = run.notified("pager", CRITICAL_ERRORS, status="resolved")
    assert resolved, run.diagnostics()
    assert all(a["status"] == "resolved" for a in resolved[0].body["alerts"])
