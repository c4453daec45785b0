"""Unit tests of the benchmark's pure parts: canned bodies, nginx config, wrk output
parsing, derived numbers. No load is generated and nothing is timed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from bench import canned, report
from bench.gateway_proc import (
    CLAUDE_JSON_ALIAS,
    CLAUDE_SSE_ALIAS,
    JSON_ALIAS,
    SSE_ALIAS,
    chat_body,
    render_gateway_config,
)
from bench.nginx import CHAT_PATH, JSON_PREFIX, SSE_PREFIX, nginx_quote, nginx_test, render_config
from bench.procs import MemSample, parse_proc_status
from bench.soak import SoakResult, next_chunk_s
from bench.wrk import WrkResult, parse_done_json, parse_text, result_from_output, to_ms

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "openai"

WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:56793/nope
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    21.44us   13.99us 601.00us   99.06%
    Req/Sec    88.32k     5.86k   96.15k    72.73%
  Latency Distribution
     50%   20.00us
     75%   22.00us
     90%   24.00us
     99%    1.35ms
  96176 requests in 1.10s, 20.91MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 96100
Requests/sec:  87434.40
Transfer/sec:     19.01MB
BENCH_JSON {"requests":96176,"duration_us":1099979,"bytes":21928128,\
"errors":{"connect":0,"read":3,"write":0,"status":96100,"timeout":2},\
"latency_us":{"min":10,"mean":21.4,"stdev":14.0,"max":601,"p50":20,"p90":24,"p99":1350,"p999":2700},\
"statuses":{"200":76,"404":96100},"bad_bodies":0}
"""


def _result(
    scenario: str = "json",
    target: str = "nginx",
    *,
    requests: int = 1000,
    duration_s: float = 2.0,
    p50: float = 1.0,
    p99: float = 2.0,
    statuses: dict[int, int] | None = None,
    bad_bodies: int = 0,
    errors: dict[str, int] | None = None,
) -> WrkResult:
    return WrkResult(
        scenario=scenario,
        target=target,
        connections=16,
        requests=requests,
        duration_s=duration_s,
        bytes=0,
        errors={"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0, **(errors or {})},
        latency_ms={"p50": p50, "p90": p99, "p99": p99},
        statuses={200: requests} if statuses is None else statuses,
        bad_bodies=bad_bodies,
    )


# --- canned upstream answers --------------------------------------------------


def test_canned_json_is_a_chat_completion_with_usage() -> None:
    body = json.loads(canned.json_body())
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "Hello! How can I help?"
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


def _sse_events(text: str) -> list[str]:
    return [block.removeprefix("data: ") for block in text.split("\n\n") if block]


def test_canned_stream_shape() -> None:
    events = _sse_events(canned.sse_body())
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) == 9  # role, 6 content pieces, finish reason, usage
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]) == "Hello! How can I help?"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"no recorded fixtures at {FIXTURES}")
def test_canned_bodies_have_the_recorded_shapes() -> None:
    recorded = json.loads((FIXTURES / "chat_completion_text_after_tool_result.json").read_text())
    ours = canned.chat_completion()
    assert set(ours) == set(recorded)
    assert set(ours["choices"][0]) == set(recorded["choices"][0])
    assert set(ours["choices"][0]["message"]) == set(recorded["choices"][0]["message"])
    assert set(ours["usage"]) == set(recorded["usage"])
    rec_chunks = [
        json.loads(e) for e in _sse_events((FIXTURES / "chat_stream_text_include_usage.sse").read_text())[:-1]
    ]
    our_chunks = canned.stream_chunks()
    assert [set(c) for c in our_chunks] == [set(rec_chunks[0])] * len(our_chunks)
    assert our_chunks[0]["choices"][0]["delta"] == rec_chunks[0]["choices"][0]["delta"]
    assert our_chunks[-1]["usage"] is not None and set(our_chunks[-1]["usage"]) == set(rec_chunks[-1]["usage"])


# --- nginx config -------------------------------------------------------------


def test_nginx_quote_escapes() -> None:
    assert nginx_quote("a'b\\c\nd") == "'a\\'b\\\\c\\nd'"
    with pytest.raises(ValueError, match=r"\$"):
        nginx_quote("cost: $5")


def test_render_config_has_the_locations(tmp_path: Path) -> None:
    conf = render_config(port=18080, workdir=tmp_path, as_root=False)
    assert f"location = {JSON_PREFIX}{CHAT_PATH}" in conf
    assert f"location = {SSE_PREFIX}{CHAT_PATH}" in conf
    assert "default_type application/json;" in conf
    assert "default_type text/event-stream;" in conf
    assert "listen 127.0.0.1:18080" in conf
    assert "worker_processes 1;" in conf and "access_log off;" in conf and "daemon off;" in conf
    assert "keepalive_requests 1000000000;" in conf
    assert f"pid {tmp_path / 'nginx.pid'};" in conf
    assert "user " not in conf
    assert "user root;" in render_config(port=1, workdir=tmp_path, as_root=True)
    assert "data: [DONE]\\n\\n'" in conf  # the stream ends with the terminator


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_rendered_config_passes_nginx_t(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_config(port=18080, workdir=tmp_path))
    checked = nginx_test(conf, tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


# --- wrk output ---------------------------------------------------------------


def test_to_ms() -> None:
    assert to_ms("20.00", "us") == pytest.approx(0.02)
    assert to_ms("1.5", "ms") == 1.5
    assert to_ms("2", "s") == 2000
    assert to_ms("1", "m") == 60_000


def test_parse_text() -> None:
    text = parse_text(WRK_OUTPUT)
    assert text["rps"] == 87434.40
    assert text["requests"] == 96176
    assert text["duration_ms"] == pytest.approx(1100)
    assert text["non_2xx"] == 96100
    assert text["socket_errors"] == {"connect": 0, "read": 3, "write": 0, "timeout": 2}
    assert text["percentiles_ms"] == {
        "50": pytest.approx(0.02),
        "75": pytest.approx(0.022),
        "90": pytest.approx(0.024),
        "99": pytest.approx(1.35),
    }


def test_parse_done_json_needs_the_marker() -> None:
    assert parse_done_json(WRK_OUTPUT)["requests"] == 96176
    with pytest.raises(ValueError, match="BENCH_JSON"):
        parse_done_json("Requests/sec: 1.0\n")


def test_result_from_output_converts_and_flags_errors() -> None:
    res = result_from_output(WRK_OUTPUT, scenario="json", target="gateway", connections=2)
    assert res.requests == 96176
    assert res.duration_s == pytest.approx(1.099979)
    assert res.latency_ms["p50"] == pytest.approx(0.020)  # wrk reports microseconds
    assert res.latency_ms["p99"] == pytest.approx(1.35)
    assert res.statuses == {200: 76, 404: 96100}
    assert res.non_2xx == 96100
    assert res.error_count == 96100 + 3 + 2
    assert res.has_errors
    assert res.rps == pytest.approx(76 / 1.099979)  # errors are not throughput
    assert res.raw_rps == pytest.approx(res.text_rps or 0, rel=1e-3)
    assert res.error_summary() == "HTTP 404x96100; read 3; timeout 2"
    assert res.to_json()["statuses"] == {"200": 76, "404": 96100}


def test_clean_result_and_bad_bodies() -> None:
    clean = _result(requests=1000, duration_s=2.0)
    assert not clean.has_errors and clean.rps == 500 and clean.error_summary() == ""
    bad = _result(requests=1000, bad_bodies=10)
    assert bad.has_errors and bad.ok_requests == 990 and "bad body x10" in bad.error_summary()
    # 3xx is not counted by wrk's status errors (> 399) but is not a success either.
    redirected = _result(requests=10, statuses={302: 10})
    assert redirected.non_2xx == 10 and redirected.rps == 0
    # wrk's own status count is used if the script's histogram is missing.
    assert _result(requests=10, statuses={}, errors={"status": 4}).non_2xx == 4
    assert _result(requests=0, statuses={}).has_errors


# --- derived numbers ------------------------------------------------------------


def test_compare_ratio_and_added_latency() -> None:
    nginx = _result("json-1conn", "nginx", requests=20_000, duration_s=2.0, p50=0.05, p99=0.2)
    gw = _result("json-1conn", "gateway", requests=1_000, duration_s=2.0, p50=0.85, p99=2.2)
    comp = report.compare(nginx, gw)
    assert comp.nginx_rps == 10_000 and comp.gateway_rps == 500
    assert comp.ratio == pytest.approx(0.05)
    assert comp.added_p50_ms == pytest.approx(0.8)
    assert comp.added_p99_ms == pytest.approx(2.0)
    assert not comp.flagged


def test_comparisons_pair_runs_by_scenario() -> None:
    runs = [
        _result("json", "nginx", p50=0.1),
        _result("json-1conn", "nginx", p50=0.05),
        _result("json", "gateway", p50=3.0, statuses={200: 900, 500: 100}),
        _result("json-1conn", "gateway", p50=0.55),
        _result("sse", "gateway"),  # no baseline: no comparison
    ]
    comps = report.comparisons(runs)
    assert [c.scenario for c in comps] == ["json", "json-1conn"]
    assert comps[0].flagged and not comps[1].flagged
    assert report.added_latency_one_conn(comps) == pytest.approx(0.5)
    assert report.added_latency_one_conn(comps[:1]) is None
    assert report.ratio(1.0, 0.0) is None


def test_summary_flags_error_runs() -> None:
    runs = [_result("json", "nginx"), _result("json", "gateway", statuses={200: 10, 502: 990})]
    text = report.summary(runs, None)
    assert "!! ERRORS: HTTP 502x990" in text
    assert "!!   json / gateway: HTTP 502x990" in text
    assert "!!" not in report.summary([_result("json", "nginx")], None)


def test_memory_report() -> None:
    mem = report.MemoryReport.from_samples(MemSample(51200, 51200, 0), None, MemSample(61440, 65536, 1))
    assert mem.rss_start_mib == 50 and mem.rss_after_warmup_mib is None
    assert mem.rss_end_mib == 60 and mem.peak_hwm_mib == 64
    assert "64.0 MiB" in "\n".join(report.memory_lines(mem))


def test_parse_proc_status() -> None:
    text = "Name:\tpython\nVmPeak:\t  300000 kB\nVmHWM:\t   70000 kB\nVmRSS:\t   65000 kB\n"
    assert parse_proc_status(text) == (65000, 70000)
    with pytest.raises(ValueError, match="VmRSS"):
        parse_proc_status("Name:\tpython\n")


def test_soak_chunking_and_growth() -> None:
    assert next_chunk_s(100_000, 2_000) == 15
    assert next_chunk_s(3_000, 2_000) == 2
    assert next_chunk_s(10, 2_000) == 1
    assert next_chunk_s(10, 0) == 15
    soak = SoakResult(100_000, 100_500, 100_500, 50.0, 0, [], 60.0, 62.5, 63.0, "reached the request count")
    assert soak.rps == 2010 and soak.growth_mib == 2.5
    assert any("+2.5 MiB" in line for line in soak.lines())
    assert soak.second_half_growth_mib is None  # no samples
    soak.samples = [(0.0, 60.0), (10.0, 62.0), (20.0, 62.4), (30.0, 62.5), (40.0, 62.5)]
    assert soak.second_half_growth_mib == pytest.approx(0.1)  # 62.4 at t=20 -> 62.5 at t=40


# --- gateway side -----------------------------------------------------------------


def test_gateway_config_is_valid(tmp_path: Path) -> None:
    config = render_gateway_config(
        port=9999, json_base_url="http://127.0.0.1:1/json/v1", sse_base_url="http://127.0.0.1:1/sse/v1"
    )
    deployments: dict[str, Any] = {alias: spec["deployments"][0] for alias, spec in config["models"].items()}
    assert deployments[JSON_ALIAS]["base_url"].endswith("/json/v1")
    assert deployments[SSE_ALIAS]["base_url"].endswith("/sse/v1")
    assert deployments[CLAUDE_JSON_ALIAS]["base_url"] == deployments[JSON_ALIAS]["base_url"]
    assert deployments[CLAUDE_SSE_ALIAS]["base_url"] == deployments[SSE_ALIAS]["base_url"]
    providers = {alias: d["provider"] for alias, d in deployments.items()}
    assert providers == {
        JSON_ALIAS: "openai_compatible",
        SSE_ALIAS: "openai_compatible",
        CLAUDE_JSON_ALIAS: "anthropic",
        CLAUDE_SSE_ALIAS: "anthropic",
    }
    from gateway.config.loader import load_config

    path = tmp_path / "gateway.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    loaded = load_config(path, env={"GATEWAY_MASTER_KEY": "bench-key-123"})
    assert set(loaded.settings.models) == {JSON_ALIAS, SSE_ALIAS, CLAUDE_JSON_ALIAS, CLAUDE_SSE_ALIAS}
    assert loaded.settings.auth.master_key == "bench-key-123"


def test_chat_body_is_the_one_the_wrk_script_always_sent() -> None:
    # The bytes wrk_post.lua built itself before bench/apis.py built every body.
    assert chat_body("bench-sse", stream=True) == (
        b'{"model":"bench-sse","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16,'
        b'"stream":true,"stream_options":{"include_usage":true}}'
    )
    assert chat_body("bench-json", stream=False, temperature=0) == (
        b'{"model":"bench-json","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16,"temperature":0}'
    )


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_serves_the_canned_bodies_verbatim(tmp_path: Path) -> None:
    import urllib.request

    from bench.nginx import NginxServer
    from bench.procs import Pinning

    with NginxServer(tmp_path, Pinning(False, "test")) as nginx:
        for url, ctype, expected in (
            (nginx.json_url, "application/json", canned.json_body()),
            (nginx.sse_url, "text/event-stream", canned.sse_body()),
        ):
            req = urllib.request.Request(url, data=chat_body("m", stream=False), method="POST")
            with urllib.request.urlopen(req, timeout=5) as resp:
                assert resp.headers["content-type"] == ctype
                assert resp.read().decode() == expected
        pid_file = tmp_path / "nginx.pid"
        assert pid_file.exists()
    assert not pid_file.exists()  # stopped on exit
