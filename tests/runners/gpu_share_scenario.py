"""Fractions of a GPU on a Ray cluster with fake GPUs: run as a script by test_gpu_share.py.

Ray can be initialised once per process and the suite holds a local Ray, so
this runs in a process of its own.  It starts a `ray.cluster_utils.Cluster`
whose two worker nodes declare GPUs that do not exist (2 and 1): Ray assigns
them ids and sets CUDA_VISIBLE_DEVICES all the same.  Probe tasks asking for
the dispatcher's options (`runners.dispatch.task_options`) report what they
saw; then `run_jobs` runs two queued jobs with `gpus_per_job=0.5` while the
GPU share in use is sampled.  Everything observed is printed as one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def probe(folder: str, together: int, hold: float) -> dict[str, Any]:
    """What a job sees of its GPUs; waits until `together` probes have started, then `hold` s."""
    import ray

    started = time.time()
    marks = Path(folder)
    marks.mkdir(parents=True, exist_ok=True)
    (marks / f"{os.getpid()}-{started}").touch()
    deadline = time.monotonic() + 90
    while len(list(marks.iterdir())) < together and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(hold)
    return {
        "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "gpu_ids": [str(i) for i in ray.get_gpu_ids()],
        "node": ray.get_runtime_context().get_node_id(),
        "together": len(list(marks.iterdir())),
        "start": started,
        "end": time.time(),
    }


def main(url: str, storage: Path, marks: Path) -> dict[str, Any]:
    import ray
    from ray.cluster_utils import Cluster

    from runners.benchmarks.base import Resources
    from runners.dispatch import job_resources, run_jobs, task_options

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
    )
    try:
        cluster.add_node(num_cpus=8, num_gpus=2)
        cluster.add_node(num_cpus=4, num_gpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        remote = ray.remote(probe)
        # A CPU protocol run with `--gpus-per-job 0.25`: 8 jobs, all running at once.
        quarter = task_options(job_resources(Resources(cpus=1.0), 0.25))
        quarters = ray.get(
            [remote.options(**quarter).remote(str(marks / "quarter"), 8, 0.5) for _ in range(8)],
            timeout=180,
        )
        # A protocol asking for 0.75 of a GPU: 4 jobs, 3 devices; no two share one at once.
        three_quarter = task_options(job_resources(Resources(cpus=1.0, gpus=0.75)))
        three_quarters = ray.get(
            [
                remote.options(**three_quarter).remote(str(marks / f"tq{i}"), 1, 1.0)
                for i in range(4)
            ],
            timeout=180,
        )
        # The dispatcher: two queued jobs with --gpus-per-job 0.5, sampled while they run
        # (once the probes' shares are back: Ray frees them just after their results).
        deadline = time.monotonic() + 60
        while ray.available_resources().get("GPU", 0.0) < 3.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        in_use: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                total = ray.cluster_resources().get("GPU", 0.0)
                in_use.append(total - ray.available_resources().get("GPU", 0.0))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            summary = run_jobs(url, address=cluster.address, storage=storage, gpus_per_job=0.5)
        finally:
            done.set()
            sampler.join()
        return {
            "quarter": quarters,
            "three_quarter": three_quarters,
            "options": {"quarter": quarter, "three_quarter": three_quarter},
            "dispatcher_gpus_in_use": sorted(set(in_use)),
            "dispatcher_states": [r.state.value for r in summary.reports],
            "dispatcher_errors": [r.error for r in summary.reports if r.error],
        }
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))))
