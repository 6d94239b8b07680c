"""The fork server behind stage start-up, and the workers that run a stage's items side by side."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kc.pipeline.workers import WorkerError, map_items

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = '''
from kc.launch import forward
forward()
import os, sys, time
print("argv", sys.argv[1:], "cwd", os.getcwd(), "env", os.environ.get("KC_PROBE"), "child", os.environ.get("KC_FORKSERVER_CHILD"))
print("stdin", sys.stdin.read().strip())
sys.stderr.write("to stderr\\n")
if sys.argv[1] == "sleep":
    time.sleep(3)
    open(sys.argv[2], "w").write("finished")
if sys.argv[1] == "boom":
    raise RuntimeError("a bug")
sys.exit(int(sys.argv[1]) if sys.argv[1].isdigit() else 0)
'''


def _env(tmp_path, **extra):
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path / "run"), KC_PROBE="probe", **extra)
    env.pop("KC_FORKSERVER_CHILD", None)
    (tmp_path / "run").mkdir(exist_ok=True)
    return env


def _run(tmp_path, *args, stdin="hello", **extra):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, str(script), *args], cwd=work, env=_env(tmp_path, **extra), input=stdin,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("server", ["1", "0"])
def test_a_script_behaves_as_its_own_process(tmp_path, server):
    out = _run(tmp_path, "3", "x y", KC_FORKSERVER=server)
    assert out.returncode == 3
    assert f"argv ['3', 'x y'] cwd {tmp_path / 'work'} env probe" in out.stdout
    assert ("child 1" in out.stdout) == (server == "1")            # it really ran in the server's child
    assert "stdin hello" in out.stdout and out.stderr == "to stderr\n"
    assert _run(tmp_path, "0", KC_FORKSERVER=server).returncode == 0
    bug = _run(tmp_path, "boom", KC_FORKSERVER=server)
    assert bug.returncode == 1 and "RuntimeError: a bug" in bug.stderr and "Traceback" in bug.stderr


def test_the_second_stage_starts_fast(tmp_path):
    _run(tmp_path, "0")                                            # starts the server
    t0 = time.perf_counter()
    _run(tmp_path, "0")
    assert time.perf_counter() - t0 < 1.5                          # no torch import: a fork


def test_killing_the_caller_kills_the_stage(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    _run(tmp_path, "0")                                            # warm
    marker = tmp_path / "finished.txt"
    proc = subprocess.Popen([sys.executable, str(script), "sleep", str(marker)], cwd=tmp_path, env=_env(tmp_path),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(3.5)
    assert not marker.exists(), "the stage went on writing after its caller was killed"


def _square(x):
    import torch
    return x * x, torch.get_num_threads()


def test_workers_compute_every_item_with_one_thread():
    out = map_items(_square, list(range(7)))
    assert [r for r, _ in out] == [x * x for x in range(7)]
    assert {t for _, t in out} == {1}


def test_a_failing_item_is_reported():
    def known(x):
        if x == 2:
            raise FileNotFoundError("data/x.npy does not exist")
        return x
    with pytest.raises(FileNotFoundError, match="data/x.npy"):
        map_items(known, range(4))

    def bug(x):
        return np.zeros(2) @ np.zeros(3)
    with pytest.raises(ValueError) as info:
        map_items(bug, range(2))
    assert "Traceback" in "".join(info.value.__notes__) and info.value._kc_raised_by_kc is False

    def dies(x):
        os._exit(9)
    with pytest.raises(WorkerError, match="died"):
        map_items(dies, range(2))
