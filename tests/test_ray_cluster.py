"""The scripts join a Ray cluster started the README's way, with `ray start --head`, token authentication on (as
Ray 2.60 turns it on where ~/.ray/auth_token exists), in a home folder of the test's own. Kept apart from
test_on_ray.py, whose in-process cluster must not be running beside this one."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import make_dataset, run_script

pytest.importorskip("ray", reason="Ray is not installed ('make venv' installs ray[data] from requirements.txt)")

FAST = ["datasetName=toy", "rf_inputResolution=64", "svm_CVals=[0.01,1,100]", "run_mbSize=8", "track_boMlflow=False"]
RAY = Path(sys.executable).parent / "ray"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_scripts_join_a_head_started_with_ray_start_and_its_token(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
    port = free_port()
    head = subprocess.Popen([RAY, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--object-store-memory=200000000"],
                            env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None and time.monotonic() < deadline, "ray start --head did not come up"
                time.sleep(0.5)
        make_dataset(tmp_path / "images" / "toy", {"horizontal": 8, "vertical": 8})
        for script in ("1_prepareData.py", "2_refineDNN.py"):
            run_script(script, tmp_path, *FAST)
        address = {"RAY_ADDRESS": f"127.0.0.1:{port}"}
        joined = run_script("3_runDNN.py", tmp_path, *FAST, "run_engine='ray'", env_extra={**address, "HOME": str(home)})
        assert "engine: Ray Data at 127.0.0.1:" in joined.stdout and "wrote" in joined.stdout
        assert ".cc:" not in joined.stderr  # none of the lines Ray's C++ core prints as it starts
        # a machine without the head's token gets one sentence that says what to do
        stranger = tmp_path / "stranger"
        stranger.mkdir()
        refused = run_script("3_runDNN.py", tmp_path, *FAST, "run_engine='ray'", check=False,
                             env_extra={**address, "HOME": str(stranger)})
        assert refused.returncode == 1
        assert "needs its token (copy the head's ~/.ray/auth_token here, or set RAY_AUTH_TOKEN)" in refused.stderr
        assert "InvalidAuthToken" not in refused.stderr  # one sentence, not a line per retry
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)


def test_a_head_that_refuses_this_machine_is_one_sentence(monkeypatch):
    """Ray reports a missing or wrong token as a ConnectionError once its retries run out (the test above), or as an
    AuthenticationError when the head answers first, as it did under a loaded CI run: both end in the same advice."""
    import ray

    from libraries import on_ray
    from libraries.errors import UserError

    with socket.socket() as listener:  # something answers at the address, as a head would
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{listener.getsockname()[1]}")

        def refuse(**kwargs):
            raise ray.exceptions.AuthenticationError("Authentication token is missing or incorrect")

        monkeypatch.setattr(ray, "init", refuse)
        with pytest.raises(UserError, match="refused this machine: it needs its token") as refused:
            on_ray.connect()
    assert on_ray.TOKEN_ADVICE in str(refused.value)
