"""A benchmark parent killed with SIGTERM (no chance to clean up) takes its pool workers with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "getppid") or sys.platform == "win32", reason="POSIX signals")

PARENT = """
import multiprocessing as mp, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from fgad.benchmark.runner import _init_worker

if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(None, 1))
    print(pool.submit(os.getpid).result(), flush=True)
    pool.submit(time.sleep, 120)  # a long job, still running when the parent is killed
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")  # a zombie (exited, not yet reaped) counts as gone
    return not (status.exists() and "\\nState:\\tZ" in status.read_text())


def test_workers_stop_when_their_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        assert _alive(worker)
        parent.send_signal(signal.SIGTERM)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 20
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), "the worker outlived its parent"
    finally:
        parent.kill()
