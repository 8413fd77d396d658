"""The README's cluster, stood up with `ray start` as an operator would, and a node killed.

The commands are read from README.md ("Running on a cluster", the block after
the marker) and run as written, with the README's environment variables set
to this machine's values: a token, a head with no CPUs (`ray start --head`),
two one-CPU workers (`ray start --address`), `mtlb run --address` on a queue
of two `synthetic-scenes-mini` jobs against PostgreSQL.  Once both jobs have
saved a checkpoint, the raylet of one worker node is SIGKILLed (its job
frozen first, so that it dies mid-training); Ray retries that job on the other
node, which resumes from the checkpoint.

Three nodes on one machine need their own ports and temporary folder, so each
`ray start` gets `--temp-dir` and `--dashboard-port` (head), its agents' ports
(`agent_ports`) and `--block` (a process per node, whose descendants the test
can find and stop).  Every process the test starts is
stopped by its pid (checked against its start time), never by name.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import JobState, Run
from db.session import transaction
from tests.runners.test_faults import jobs_and_runs, queue_mini

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKER = "<!-- run as written by tests/runners/test_ray_start_cluster.py -->"


def readme_commands() -> list[str]:
    """The command lines of the README's cluster block, comments and blank lines left out."""
    text = README.read_text()
    assert MARKER in text, f"README.md lost its marker {MARKER}"
    block = re.search(r"```bash\n(.*?)```", text[text.index(MARKER) :], re.DOTALL)
    assert block is not None, "no ```bash block after the README's marker"
    lines = [line.strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def command(prefix: str) -> str:
    [line] = [line for line in readme_commands() if line.startswith(prefix)]
    return line


def test_readme_cluster_block_has_each_step_once() -> None:
    lines = readme_commands()
    steps = ["(umask 077", "ray start --head ", "ray start --address ", "mtlb run --address "]
    assert [next(s for s in steps if line.startswith(s)) for line in lines] == steps


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent_ports() -> str:
    """`ray start` flags giving a node's agents ports of their own.

    Left to choose (0), an agent writes its port to a file that the raylet
    waits 15 s for, then aborts: too short for three nodes starting at once
    on a loaded machine.
    """
    flags = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
             "runtime-env-agent-port")  # fmt: skip
    return " ".join(f"--{flag} {free_port()}" for flag in flags)


Process = tuple[int, str]  # pid, start time (field 22 of /proc/PID/stat): immune to pid reuse


def identity(pid: int) -> Process | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return pid, stat.rsplit(")", 1)[1].split()[19]


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def wait_for(condition: Callable[[], object], what: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"waited {timeout:.0f} s for {what}; {log}:\n{log.read_text()[-3000:]}"
            )
        time.sleep(0.05)


def send(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # it just finished
            os.kill(pid, sig)


def up(node: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until `ray start --block` has started its node; fail with its log if it exits."""
    ready = b"Ray runtime started."
    wait_for(lambda: ready in log.read_bytes() or node.poll() is not None, "a node", 300, log)
    assert node.poll() is None, log.read_text()[-3000:]


class Started:
    """Every process this test started, and their descendants, to be SIGKILLed by pid."""

    def __init__(self) -> None:
        self.processes: set[Process] = set()
        self.roots: list[subprocess.Popen[bytes]] = []

    def spawn(self, line: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        # `exec`: the pid is the command's own, not a shell's.
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["bash", "-c", f"exec {line}"], env=env, cwd=ROOT, stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.roots.append(proc)
        self.note(proc.pid)
        return proc

    def note(self, pid: int) -> None:
        for p in [pid, *descendants(pid)]:
            if (ident := identity(p)) is not None:
                self.processes.add(ident)

    def stop(self) -> None:
        for root in self.roots:
            self.note(root.pid)
        for pid, started in self.processes:
            if identity(pid) == (pid, started):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for root in self.roots:
            root.wait()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary folder with a short path: Ray's sockets live under it (108-byte limit)."""
    path = Path(tempfile.mkdtemp(prefix="mtlb-rc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_readme_cluster_survives_a_worker_raylet_killed(database_url: str, short_tmp: Path) -> None:
    queue_mini(database_url, short_tmp, ["hps-equal"], seeds=2, width=3.0)
    storage = short_tmp / "storage"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    env.update(
        # The README's settings, with this machine's values.
        RAY_HEAD="127.0.0.1",
        RAY_PORT=str(free_port()),
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(short_tmp / "ray-token"),
        MTLB_DATABASE_URL=database_url,
        MTLB_STORAGE=str(storage),
        # `ray` and `mtlb` of this environment, and this checkout's code in every worker.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT),
        # How long a node waits for its raylet to register (30 s by default): on a loaded
        # machine three nodes starting at once take longer.
        RAY_raylet_start_wait_time_s="120",
        # The GCS declares a node dead after 5 missed health checks 3 s apart (by default),
        # and only then does Ray retry its job: check every second, dead after 3 misses.
        RAY_health_check_period_ms="1000",
        RAY_health_check_failure_threshold="3",
        # Ray's processes (a node starts five) compile their imports once into this cache,
        # not each from source where PYTHONDONTWRITEBYTECODE is set: else a node's agents can
        # miss the 15 s their raylet gives them to start.
        PYTHONPYCACHEPREFIX=str(Path(tempfile.gettempdir()) / "mtlb-test-pycache"),
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    token = subprocess.run(
        ["bash", "-c", command("(umask 077")], env=env, capture_output=True, check=False
    )
    assert token.returncode == 0, token.stderr
    assert (short_tmp / "ray-token").stat().st_mode & 0o077 == 0  # its owner's only
    started = Started()
    logs = short_tmp / "logs"
    logs.mkdir()
    try:
        head = started.spawn(
            f"{command('ray start --head ')} --temp-dir {short_tmp / 'ray'}"
            f" --dashboard-port {free_port()} {agent_ports()} --block",
            env, logs / "head.log",
        )  # fmt: skip
        up(head, logs / "head.log")
        # One node at a time, then the dispatcher: a node's raylet gives its agents 15 s to
        # start, which three nodes starting at once on a loaded machine can exceed.
        workers: list[subprocess.Popen[bytes]] = []
        for i in range(2):
            log = logs / f"worker{i}.log"
            workers.append(
                started.spawn(
                    f"{command('ray start --address ')} {agent_ports()} --block", env, log
                )
            )
            up(workers[-1], log)
        dispatcher = started.spawn(command("mtlb run --address "), env, logs / "mtlb.log")

        def jobs_on(node: subprocess.Popen[bytes]) -> list[int]:
            return [p for p in descendants(node.pid) if cmdline(p).startswith(b"ray::execute")]

        def caught() -> bool:
            """Every running job frozen mid-training, each with a checkpoint (then True)."""
            if any(p.poll() is not None for p in [head, dispatcher, *workers]):
                return True
            if not any(storage.glob("*/checkpoint.pt")):
                return False
            # Frozen, a job cannot finish in the time Ray takes to notice its node is gone.
            frozen = [pid for w in workers for pid in jobs_on(w)]
            send(frozen, signal.SIGSTOP)
            if frozen and len(list(storage.glob("*/checkpoint.pt"))) == len(frozen):
                return True
            send(frozen, signal.SIGCONT)  # a job without its first checkpoint yet: go on
            return False

        wait_for(caught, "the running jobs' first checkpoints", 300, logs / "mtlb.log")
        for name, proc in [("head", head), ("mtlb", dispatcher), ("worker0", workers[0]),
                           ("worker1", workers[1])]:  # fmt: skip
            assert proc.poll() is None, (logs / f"{name}.log").read_text()[-3000:]
        victim, *others = sorted(workers, key=lambda w: not jobs_on(w))
        started.note(victim.pid)  # its workers outlive the raylet: stop them at the end
        [raylet] = [p for p in descendants(victim.pid) if b"/raylet/raylet" in cmdline(p)]
        os.kill(raylet, signal.SIGKILL)
        send([pid for w in others for pid in jobs_on(w)], signal.SIGCONT)  # the other job goes on
        assert dispatcher.wait(timeout=240) == 0, (logs / "mtlb.log").read_text()
        assert head.poll() is None  # the head and the other worker are still up
        output = (logs / "mtlb.log").read_text()
    finally:
        started.stop()

    jobs, runs = jobs_and_runs(database_url)
    live = {i: j for i, j in jobs.items() if j.state != JobState.CANCELLED}
    assert len(live) == 2
    assert {j.state for j in live.values()} == {JobState.SUCCEEDED}
    assert runs == dict.fromkeys(live, 1)  # one run per job
    with transaction(database_url) as session:
        resumed = sorted(r.resumed_from_epoch is not None for r in session.scalars(select(Run)))
    assert resumed == [False, True]  # the killed node's job resumed from its checkpoint
    assert not any(storage.glob("*/*"))  # each checkpoint deleted once its run was recorded
    for job_id, job in live.items():
        assert f"job {job_id} hps-equal seed {job.seed}: succeeded" in output
