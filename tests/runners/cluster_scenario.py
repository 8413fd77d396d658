"""A worker node dies mid-job: run as a script by tests/runners/test_faults.py.

Ray can be initialised once per process and the suite holds a local Ray, so
this runs in a process of its own: it starts a `ray.cluster_utils.Cluster`
(a head with no CPU, two worker nodes with one CPU each), runs `mtlb run
--address` against it as a subprocess, waits until the job has saved its
first checkpoint, freezes it (SIGSTOP) and kills the node running it, lets Ray retry the job on the
other one, and prints what it observed as one JSON line.  The test asserts
on that and on the database.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def wait_for(condition: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.02)


def running_jobs() -> list[int]:
    """Pids of the Ray workers running a job now (Ray titles them `ray::execute_job` meanwhile)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if entry.name.isdigit() and title.startswith(b"ray::execute"):
            found.append(int(entry.name))
    return found


def main(url: str, storage: Path) -> dict[str, Any]:
    import ray
    from ray._private.state import available_resources_per_node
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            # Notice a dead node within about a second.
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 2},
        },
    )
    dispatcher = None
    frozen: list[int] = []
    try:
        nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        dispatcher = subprocess.Popen(
            [sys.executable, "-c", "from submissions.cli import app; app()", "--database", url,
             "run", "--address", cluster.address, "--storage", str(storage), "--lease", "1m"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

        def busy() -> list[Any]:
            """The nodes whose one CPU is taken (a job asks for its protocol's CPUs)."""
            free = available_resources_per_node()
            return [n for n in nodes if free.get(n.node_id, {}).get("CPU", 0.0) == 0.0]

        wait_for(busy, "the job to start")
        cpus_in_use = ray.cluster_resources()["CPU"] - ray.available_resources().get("CPU", 0.0)
        [running] = busy()
        wait_for(lambda: any(storage.glob("*/checkpoint.pt")), "the job's first checkpoint")
        # Freeze the job where it is, so that it cannot finish in the time the node
        # takes to die: the node then dies mid-job, every time.
        frozen = running_jobs()
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        cluster.remove_node(running, allow_graceful=False)
        killed_at = time.monotonic()
        output, _ = dispatcher.communicate(timeout=180)
        return {
            "cpus_in_use": cpus_in_use,
            "dispatcher_rc": dispatcher.returncode,
            "dispatcher_output": output,
            "recovery_s": time.monotonic() - killed_at,
            "checkpoints_left": [str(p) for p in storage.glob("*/*")],
            "frozen": len(frozen),
        }
    finally:
        for pid in frozen:  # whatever the node's death left of them
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if dispatcher is not None and dispatcher.poll() is None:
            dispatcher.kill()
            dispatcher.wait()
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], Path(sys.argv[2]))))
