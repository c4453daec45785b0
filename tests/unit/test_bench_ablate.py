"""bench.ablate and its switch (bench/ablations.py): the catalogue names what the gateway
has, the switch turns a stand-in on and off inside a running process, a gateway that does
not switch is reported, and one short run weighs every variant in one real gateway (nginx
and wrk, as the benchmark runs them)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import ablate, canned
from bench.ablations import ABLATIONS, AS_BUILT, CONTROL_ENV, resolve, write_sitecustomize
from bench.procs import BenchError
from bench.rounds import Rounds
from gateway.dialects.responses_stream import ResponsesStream
from gateway.server.streaming import render_chunks

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_every_ablation_swaps_a_callable_the_gateway_has(name: str) -> None:
    for target, _factory in ABLATIONS[name].swaps:
        resolve(target)  # raises AttributeError when the gateway no longer has it


def test_a_target_that_is_gone_is_named() -> None:
    with pytest.raises(AttributeError, match=r"ResponseStore\.gone: no such callable"):
        resolve("gateway.state.response_store:ResponseStore.gone")


SCRIPT = r"""
import asyncio, json, os, signal, sys
from pathlib import Path
from gateway.state.embedded import EmbeddedBackend
from gateway.state.response_store import ResponseStore

control = Path(os.environ["BENCH_ABLATE_CONTROL"])
ack = control.with_name(control.name + ".ack")

def choose(name):
    control.write_text(name)
    os.kill(os.getpid(), signal.SIGUSR1)  # handled at the next bytecode, in this thread
    return ack.read_text()

async def main():
    backend = EmbeddedBackend(sys.argv[1])
    store = ResponseStore(backend, 3600, 1 << 20)
    seen = {}
    turns = [("resp_1", "as-built"), ("resp_2", "no-stored-row"), ("resp_3", "no-such-one")]
    turns += [("resp_4", "stored-row-300-bytes"), ("resp_5", "no-blob-writes"), ("resp_6", "as-built")]
    for rid, variant in turns:
        said = choose(variant)
        await store.save("key-a", {"id": rid}, [{"role": "user", "content": "hi " * 200}], None)
        row = await backend.blob_get(store._key("key-a", rid))
        kept = row is not None and await store.load("key-a", rid) is not None
        seen[rid] = [said, "cut" if row is not None and len(row) == 300 else kept]  # there, cut short
    await backend.aclose()
    print(json.dumps(seen))

asyncio.run(main())
"""


def test_the_switch_turns_a_stand_in_on_and_off_inside_the_process(tmp_path: Path) -> None:
    control = tmp_path / "ablation"
    control.write_text(AS_BUILT)
    site = write_sitecustomize(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]), CONTROL_ENV: str(control)}
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "state.db")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
    )
    seen = json.loads(run.stdout)
    assert seen == {
        "resp_1": ["as-built", True],  # the gateway's own save: the record is kept
        "resp_2": ["no-stored-row", False],  # the stand-in: serialised, not put
        "resp_3": ["as-built", True],  # a name it does not know is as built
        "resp_4": ["stored-row-300-bytes", "cut"],  # written, but only its first 300 bytes
        "resp_5": ["no-blob-writes", False],  # two stand-ins on one target: each when chosen
        "resp_6": ["as-built", True],
    }


def test_without_the_control_variable_nothing_is_swapped(tmp_path: Path) -> None:
    site = write_sitecustomize(tmp_path / "site")
    env = {k: v for k, v in os.environ.items() if k != CONTROL_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO)])
    code = "from gateway.state.response_store import ResponseStore as R; print(R.save.__module__)"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.strip() == "gateway.state.response_store"


def test_a_process_that_does_not_switch_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ablate, "ACK_TIMEOUT_S", 0.5)
    code = "import signal, time; signal.signal(signal.SIGUSR1, signal.SIG_IGN); print('ready', flush=True)"
    code += "; time.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with pytest.raises(BenchError, match=r"did not switch to no-stored-row within 0.5s \(it said nothing;"):
            ablate.Switch(tmp_path / "ablation").to(proc.pid, "no-stored-row")
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--ablation", "nope"], "invalid choice: 'nope'"),
        (["--route", "nope"], "invalid choice: 'nope'"),
        (["--rounds", "0"], "must be at least 1"),
        (["--duration", "x"], "invalid at_least_one value"),
    ],
)
def test_bad_arguments_are_named(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        ablate.main(argv)
    assert exited.value.code == 2
    assert says in capsys.readouterr().err


def test_the_encoder_stand_in_sends_chat_chunks_and_the_mark_wrk_looks_for() -> None:
    swaps = dict(ABLATIONS["responses-stream-as-chat"].swaps)
    chunks = swaps["gateway.dialects.responses_stream:ResponsesStream.chunks"](ResponsesStream.chunks)
    finish = swaps["gateway.dialects.responses_stream:ResponsesStream.finish"](ResponsesStream.finish)
    stream = ResponsesStream("resp_1", "m", {"model": "m", "input": "hi"}, 1)
    batch = canned.stream_chunks()
    assert chunks(stream, batch) == render_chunks(batch, True)
    assert finish(stream).startswith(b"event: response.completed\n")
    assert stream.response is None  # nothing left to store: what its leaves_out says
    assert "also the stored row" in ABLATIONS["responses-stream-as-chat"].leaves_out


def test_a_streams_only_ablation_on_whole_answers_is_refused_before_anything_starts() -> None:
    args = ablate.parser().parse_args(["--ablation", "responses-stream-as-chat", "--rounds", "1"])
    with pytest.raises(BenchError, match="responses-stream-as-chat only changes streams: add --stream"):
        ablate.run(args, out=lambda line: None)


def test_the_change_is_the_median_of_the_rounds_differences() -> None:
    # Rounds drift together: the paired median (-10) is not the difference of the medians (-40).
    cpu = Rounds({AS_BUILT: [400.0, 500.0, 600.0], "x": [390.0, 460.0, 590.0]}, AS_BUILT, {}, lower_is_better=True)
    loop = Rounds({AS_BUILT: [390.0, 490.0, 590.0], "x": [388.0, 455.0, 589.0]}, AS_BUILT, {}, lower_is_better=True)
    lines = ablate.changes("r", {"cpu": cpu, "loop": loop}, ["x"])
    assert lines[0] == "r, as-built: CPU per request 500.0 µs; threads besides the event loop's 10.0 µs"
    assert lines[1] == (
        "r, x: CPU per request 460.0 µs, -10.0 µs against as built (median of the rounds' differences);"
        " threads besides the event loop's 2.0 µs"
    )


@pytest.mark.skipif(shutil.which("nginx") is None or shutil.which("wrk") is None, reason="needs nginx and wrk")
def test_one_short_run_weighs_every_variant_in_one_gateway() -> None:
    args = ablate.parser().parse_args(["--ablation", "no-stored-row", "--rounds", "1", "--duration", "1"])
    lines: list[str] = []
    tables = ablate.run(args, out=lines.append)
    measures = tables["responses-gpt"]
    for variant in (AS_BUILT, "no-stored-row"):
        (rps,) = measures["rps"].rps[variant]
        (cpu,) = measures["cpu"].rps[variant]
        (loop,) = measures["loop"].rps[variant]
        assert rps > 0 and 0 < loop <= cpu
    assert any(line.startswith("responses-gpt, no-stored-row: CPU per request ") for line in lines)
    assert any("against as built (median of the rounds' differences)" in line for line in lines)
    assert "no-stored-row: leaves out a stored Response's row (its record still serialised, nothing put)" in lines


def test_a_gateway_that_has_exited_is_named(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(BenchError, match=rf"the gateway \(pid {proc.pid}\) has exited"):
        ablate.Switch(tmp_path / "ablation").to(proc.pid, "no-stored-row")


def test_records_one_by_one_records_each_request_as_it_ends() -> None:
    from gateway.server.records import RecordBatch

    ((target, factory),) = ABLATIONS["records-one-by-one"].swaps
    assert target == "gateway.server.records:RecordBatch.ended"
    ended = factory(RecordBatch.ended)
    done: list[int] = []

    async def main() -> None:
        batch = RecordBatch(delay_s=0.005)
        batch.began()
        batch.began()
        batch.ended(lambda: done.append(1))  # as built: held, one request still in flight
        assert done == [] and batch.held == 1
        ended(batch, lambda: done.append(2))  # the stand-in: what was held, then this one, now
        assert done == [1, 2] and batch.held == 0

    asyncio.run(main())


def test_blob_writes_inline_writes_the_batch_on_the_calling_thread(tmp_path: Path) -> None:
    """The stand-in writes the write-behind's batch (``_Db.blob_put``) where it is called, the
    event loop's thread; every other call still goes to the backend's worker thread (here
    shut down, so a call handed to it fails)."""
    from gateway.state.embedded import EmbeddedBackend

    ((target, factory),) = ABLATIONS["blob-writes-inline"].swaps
    assert target == "gateway.state.embedded:EmbeddedBackend._run"
    inline = factory(EmbeddedBackend._run)

    async def main() -> None:
        backend = EmbeddedBackend(str(tmp_path / "state.db"))
        await inline(backend, backend._db.open)
        backend._executor.shutdown()
        await inline(backend, backend._db.blob_put, [("k", b"v", time.time() + 60)])
        assert backend._db.blob_get("k") == b"v"  # written, with no worker thread to write it
        with pytest.raises(RuntimeError, match="after shutdown"):
            await inline(backend, backend._db.blob_get, "k")
        backend._db.close()

    asyncio.run(main())
