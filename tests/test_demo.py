"""`iu demo` as a newcomer meets it: the live panel's content, and Ctrl-C leaving nothing behind."""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from rich.console import Console

from streams.cli.dashboard import Snapshot, live_panel, shift_table
from streams.kafka.broker import free_port


def rendered(renderable: object) -> str:
    console = Console(record=True, width=140, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_live_panel_shows_what_ops_watch():
    s = Snapshot(elapsed_s=12.0, published=9_000, total=20_000, consumed=8_500, events_per_s=1234.0, p50_ms=41.0,
                 p99_ms=140.0, hit_ours=0.061, hit_popularity=0.043, trials=5000, drift=2, dead_letters=3,
                 lists=4000, users=600)
    text = rendered(live_panel(s, top_k=10))
    for shown in ("9,000 / 20,000", "1,234", "lag", "500", "41 ms", "140 ms", "hit rate@10 ours", "0.061", "0.043",
                  "drift detections", "dead letters", "3"):
        assert shown in text, (shown, text)


def test_shift_table_marks_what_the_latest_event_brought_in():
    group = shift_table("42", "click on Heat (1995) (home)", ["A", "B", "C"], ["B", "D", "A"])
    assert "user 42: latest event click on Heat (1995) (home)" in rendered(group)
    table = group.renderables[1]
    before, after = ([str(c) for c in col._cells] for col in table.columns[1:])
    assert before == ["A", "B", "C"] and after == ["B", "D", "A"]
    marked = [str(c) for c in table.columns[2]._cells if "green" in str(c.style)]
    assert marked == ["D"]


def processes_with(needle: bytes) -> list[int]:
    """Live processes whose command line or environment contains `needle`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if needle in (proc / "cmdline").read_bytes() or needle in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


def worker_consumes(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
            return b'"events_in"' in r.read()
    except OSError:
        return False


def worker_started(port: int) -> bool:
    """A worker process of this demo exists (it is not ready yet: ready takes seconds)."""
    return bool(set(processes_with(f"IU_WEB_PORT={port}".encode())) & set(processes_with(b"streams.cli\0worker")))


@pytest.mark.parametrize(("when", "sig"), [("starting", signal.SIGINT), ("consuming", signal.SIGINT),
                                           ("consuming", signal.SIGTERM)])
def test_ctrl_c_or_a_stop_request_stops_the_worker_and_the_broker(tiny_model, tmp_path, when, sig):
    """Ctrl-C while the worker is still starting, or while the demo watches it consume; and SIGTERM
    (`timeout`, `kill`), after which a stock Python process would leave both running."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IU_")}
    env.update({"IU_MODEL": str(tiny_model), "IU_MILVUS_URI": str(tmp_path / "milvus.db"), "IU_DEVICE": "cpu",
                "IU_WEB_PORT": str(port), "IU_DATA_DIR": str(Path("var/data").resolve())})
    # As from a terminal: a shell without job control (CI's, say) starts background jobs with SIGINT
    # ignored, which Python keeps, and Ctrl-C would never reach the demo.
    demo = subprocess.Popen([sys.executable, "-m", "streams.cli", "demo", "--events", "50000", "--rate", "200"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    reached = worker_started if when == "starting" else worker_consumes
    try:
        deadline = time.monotonic() + 180
        while not reached(port):
            assert time.monotonic() < deadline, f"the demo's worker never got to {when}"
            assert demo.poll() is None, demo.stdout.read().decode(errors="replace")[-3000:] if demo.stdout else ""
            time.sleep(0.1)
        assert when == "consuming" or not worker_consumes(port), "the worker was ready already"
        demo.send_signal(sig)
        out = demo.communicate(timeout=90)[0].decode(errors="replace")
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(30)
        left = processes_with(f"IU_WEB_PORT={port}".encode())
        for pid in left:  # a failed test leaves nothing running
            os.kill(pid, signal.SIGKILL)
    assert left == [], f"left running: {left}"
    assert demo.returncode == 130, out[-3000:]
    assert "interrupted" in out
    bootstrap = re.search(r"broker (127\.0\.0\.1:\d+)", out)
    assert bootstrap, out[-3000:]
    assert processes_with(bootstrap.group(1).encode()) == []
