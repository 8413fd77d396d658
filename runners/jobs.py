"""One job as a Ray worker runs it: its spec from JSON, its training, its outcome as data.

`execute` (one worker) and `runners.distributed.execute_data_parallel` (Ray
Train workers) both end in a `JobOutcome`: the only shape in which a job's
result or failure travels back to the dispatcher, which records it
(`runners.dispatch`).  Neither ever raises: whatever a submitted spec does,
the dispatcher gets an outcome to record.
"""

from __future__ import annotations

import dataclasses
import json
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from db.models import JobState
from runners.train import CurvePoint, Diverged, RunResult, TimeLimitExceeded, train


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended: succeeded with its result, or failed/diverged with the reason.

    `error` keeps the traceback's last frames after its first line, for the
    operator; its first line alone is the reason shown to visitors.
    """

    state: JobState
    result: RunResult | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if (self.state == JobState.SUCCEEDED) != (self.result is not None):
            raise ValueError("a succeeded outcome carries a result, and only it does")

    @classmethod
    def succeeded(cls, result: RunResult) -> JobOutcome:
        return cls(JobState.SUCCEEDED, result=result)

    @classmethod
    def failed(cls, error: str) -> JobOutcome:
        return cls(JobState.FAILED, error=error)

    @classmethod
    def of_exception(cls, e: BaseException) -> JobOutcome:
        """A training that raised: diverged, past its time limit, or failed with its traceback."""
        if isinstance(e, Diverged):
            return cls(JobState.DIVERGED, error=str(e))
        if isinstance(e, TimeLimitExceeded):
            return cls.failed(str(e))
        detail = traceback.format_exc(limit=-3)
        return cls.failed(f"{type(e).__name__}: {e}\n{detail}")

    def to_json(self) -> str:
        """As JSON text (Ray Train reports a data-parallel job's outcome as a file)."""
        result = None if self.result is None else dataclasses.asdict(self.result)
        return json.dumps({"state": self.state.value, "result": result, "error": self.error})

    @classmethod
    def from_json(cls, text: str) -> JobOutcome:
        data = json.loads(text)
        fields = data.get("result")
        result = None
        if fields is not None:
            result = RunResult(**{**fields, "curves": [CurvePoint(**c) for c in fields["curves"]]})
        return cls(JobState(data["state"]), result=result, error=data.get("error"))


def job_spec(payload: object) -> dict[str, Any]:
    """The spec of a job from its JSON text; TypeError for anything but a JSON object in a str.

    Ray pickles a task's arguments.  So that nothing that came from a submitter
    is ever pickled, the spec travels as JSON text, parsed here.
    """
    if not isinstance(payload, str):
        raise TypeError(f"a job's spec travels as a JSON string, got {type(payload).__name__}")
    spec = json.loads(payload)
    if not isinstance(spec, dict):
        raise TypeError(f"a job's spec is a JSON object, got {type(spec).__name__}")
    return spec


def execute(
    spec_json: str,
    seed: int,
    cpus: float,
    gpus: float,
    checkpoint: str | None = None,
    time_limit_s: float | None = None,
) -> JobOutcome:
    """Run one job in a Ray worker; never raises, reports the outcome as data.

    The spec travels as JSON text (`job_spec`); the other arguments are numbers
    and a path of our own.  `checkpoint`: the job's checkpoint file on shared
    storage; Ray's retry of the job (its node died) finds it there, on
    whichever node it lands, and resumes.  `time_limit_s`: the protocol's
    limit of one job (`runners.train.TimeLimitExceeded`).
    """
    try:
        spec = job_spec(spec_json)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        if any(isinstance(n, bool) or not isinstance(n, int | float) for n in (cpus, gpus)):
            raise TypeError("cpus and gpus must be numbers")
        torch.set_num_threads(max(1, int(cpus)))
        device = "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"
        path = None if checkpoint is None else Path(checkpoint)
        result = train(spec, seed, device=device, checkpoint=path, time_limit_s=time_limit_s)
    except Exception as e:
        return JobOutcome.of_exception(e)
    return JobOutcome.succeeded(result)


__all__ = ["JobOutcome", "execute", "job_spec"]
