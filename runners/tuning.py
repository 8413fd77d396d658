"""Equal-budget hyper-parameter tuning with Ray Tune, on a validation split.

A spec may declare a search space over its own parameters (`search:`, checked
by `submissions.search`); its protocol fixes the budget (`tuning_trials`, the
same for every method) and the validation split (`validation_fraction` of the
train split, carved by `validation_split`).  Every trial trains with the
protocol's first seed on the train split less the validation part and is
scored on the validation part; the test split is never loaded here (the data
reaches the trials through Ray's object store, from `tuning_data`).

The search is Tune's `BasicVariantGenerator` (random search) with a fixed
seed, whose first point is the spec's own values.  A trial's objective is its
Δm per task (`db.delta_m`, higher is better) on the validation split against
that first trial: the spec's own values score 0, so the values chosen (the best
objective, the earliest trial on a tie) are never worse on validation than
the untuned spec.  A trial that fails or diverges is kept with its reason and
no objective; if the first trial fails, the tuning fails.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from sqlalchemy.orm import Session, sessionmaker

from db.delta_m import delta_m
from db.models import JobState
from db.tunings import store_tuning, tuning_of
from runners.benchmarks import BENCHMARKS, Benchmark, Protocol
from runners.benchmarks.base import Batch
from runners.jobs import JobOutcome
from runners.multi_input import split_size
from runners.protocol_checks import SECTIONS
from runners.splits import held_out
from runners.train import train

# Key of a job's spec that carries the values it was trained with (see `with_values`).
TUNED_KEY = "tuned"
OBJECTIVE = "Δm per task (%) on the validation split against the spec's own values"


class TuningError(RuntimeError):
    """A tuning that could not choose values (its reason is one line)."""


@dataclass(frozen=True)
class Trial:
    """One trial: the values it tried, its validation metrics and objective, or why it failed."""

    values: dict[str, Any]
    state: str  # a JobState's value: "succeeded", "failed" or "diverged"
    objective: float | None = None
    metrics: dict[str, dict[str, float]] | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "values": self.values,
            "state": self.state,
            "objective": self.objective,
            "metrics": self.metrics,
            "error": self.error,
        }


@dataclass(frozen=True)
class Tuning:
    """A finished tuning: the values chosen and every trial, in the order Tune created them."""

    chosen: dict[str, Any]
    trials: list[Trial]
    trial_budget: int
    validation_size: int


def tuning_data(benchmark: Benchmark, protocol: Protocol) -> tuple[Batch, Batch]:
    """(train split less its validation part, the validation part); loads the train split only."""
    return held_out(benchmark.load("train", protocol), benchmark, protocol)


def with_values(spec: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """`spec` with each `<section>.<parameter>` of `values` set; the values are kept under
    `tuned` as the job's record of what it trained with.  The worker re-checks them all."""
    merged = json.loads(json.dumps(spec))
    for path, value in values.items():
        section, _, parameter = path.partition(".")
        if section not in SECTIONS or not isinstance(merged.get(section), dict):
            raise ValueError(f"search parameter {path!r}: the spec has no {section!r} section")
        merged[section][parameter] = value
    merged[TUNED_KEY] = dict(values)
    return merged


def start_values(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's own value of every searched parameter: the first point of the search."""
    out = {}
    for path in spec["search"]:
        section, _, parameter = path.partition(".")
        out[path] = spec[section][parameter]
    return out


def param_space(search: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Tune's distribution for each searched parameter of a (validated) search space.

    Integer ranges include `high` (Tune's randint excludes it).
    """
    from ray import tune

    space: dict[str, Any] = {}
    for path, dimension in search.items():
        if "choices" in dimension:
            space[path] = tune.choice(list(dimension["choices"]))
            continue
        low, high, log = dimension["low"], dimension["high"], bool(dimension.get("log", False))
        if isinstance(low, int) and isinstance(high, int):
            space[path] = tune.lograndint(low, high + 1) if log else tune.randint(low, high + 1)
        else:
            space[path] = tune.loguniform(low, high) if log else tune.uniform(low, high)
    return space


def _search_seed(spec: Mapping[str, Any]) -> int:
    """Seed of the random search: fixed per spec, so a tuning can be repeated."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def trial(
    config: dict[str, Any], spec_json: str, seed: int, cpus: float, gpus: float, data: Any
) -> None:
    """Tune's function trainable: train with `config` merged in, report validation metrics.

    Never raises: a trial that fails or diverges reports its state and reason,
    and the tuning keeps it as a trial without an objective.  The spec travels
    as JSON text (nothing that came from a submitter is pickled).
    """
    from ray import tune

    try:
        fit_data, validation_data = data
        spec = with_values(json.loads(spec_json), config)
        torch.set_num_threads(max(1, int(cpus)))
        device = "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"
        protocol = BENCHMARKS.get(str(spec["benchmark"])).protocol(int(spec["protocol_version"]))
        result = train(
            spec, seed, device=device, train_data=fit_data, evaluation_data=validation_data,
            time_limit_s=protocol.time_limit_s,
        )  # fmt: skip
        report = {"state": JobState.SUCCEEDED.value, "metrics_json": json.dumps(result.metrics)}
    except Exception as e:
        outcome = JobOutcome.of_exception(e)
        report = {"state": outcome.state.value, "error": outcome.error or ""}
    tune.report(report)


def objectives(
    trials: list[Trial], directions: Mapping[str, Mapping[str, bool]]
) -> list[float | None]:
    """Each succeeded trial's Δm per task against the first trial's metrics (None if failed).

    A metric that is zero for the first trial is left out for every trial
    (Δm against zero is undefined).
    """
    reference = trials[0].metrics
    if reference is None:
        raise TuningError(
            f"the spec's own values failed on the validation split: {trials[0].error or '?'}"
        )
    kept = {
        task: {m: higher for m, higher in metrics.items() if reference[task][m] != 0.0}
        for task, metrics in directions.items()
    }
    kept = {task: metrics for task, metrics in kept.items() if metrics}
    return [
        None if t.metrics is None else delta_m(t.metrics, reference, kept).per_task for t in trials
    ]


def choose(trials: list[Trial]) -> dict[str, Any]:
    """The values of the best objective; the earliest trial wins a tie (the spec's own first)."""
    scored = [(t.objective, -i) for i, t in enumerate(trials) if t.objective is not None]
    if not scored:
        raise TuningError("no trial succeeded")
    return dict(trials[-max(scored)[1]].values)


def tune_spec(spec: Mapping[str, Any]) -> Tuning:
    """Run the tuning of a spec with a `search` on the current Ray cluster.

    Raises TuningError (one line) when no values can be chosen.
    """
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    benchmark = BENCHMARKS.get(str(spec["benchmark"]))
    protocol = benchmark.protocol(int(spec["protocol_version"]))
    if protocol.tuning_trials < 1:
        raise TuningError(f"{benchmark.name} v{protocol.version} allows no tuning")
    search = spec["search"]
    start = start_values(spec)
    fit_data, validation_data = tuning_data(benchmark, protocol)
    res = protocol.resources
    trainable = tune.with_resources(
        tune.with_parameters(
            trial,
            spec_json=json.dumps(spec),
            seed=protocol.seeds[0],
            cpus=res.cpus,
            gpus=res.gpus,
            data=(fit_data, validation_data),
        ),
        {"cpu": res.cpus, "gpu": res.gpus},
    )
    # Tune's new console output prints a header whatever `verbose` says, into the
    # dispatcher's progress bar; the classic one stays quiet at verbose=0.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    with tempfile.TemporaryDirectory(prefix="mtlb-tune-") as storage:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(search),
            tune_config=tune.TuneConfig(
                num_samples=protocol.tuning_trials,
                search_alg=BasicVariantGenerator(
                    points_to_evaluate=[start], random_state=_search_seed(spec)
                ),
            ),
            run_config=tune.RunConfig(storage_path=storage, name="tuning", verbose=0),
        )
        grid = tuner.fit()
        results = sorted(
            (grid[i] for i in range(len(grid))),
            key=lambda r: str((r.metrics or {}).get("trial_id", "")),
        )
    trials = []
    for r in results:
        reported = r.metrics or {}
        values = {path: (r.config or {}).get(path) for path in search}
        if r.error is not None or "state" not in reported:
            error = f"{type(r.error).__name__}: {r.error}"
            trials.append(Trial(values, JobState.FAILED.value, error=error))
        elif reported["state"] == JobState.SUCCEEDED.value:
            metrics = json.loads(reported["metrics_json"])
            trials.append(Trial(values, JobState.SUCCEEDED.value, metrics=metrics))
        else:
            trials.append(Trial(values, str(reported["state"]), error=str(reported.get("error"))))
    if len(trials) != protocol.tuning_trials or not trials or trials[0].values != start:
        raise TuningError(
            f"Tune returned {len(trials)} trial(s) of {protocol.tuning_trials},"
            " the first not at the spec's own values"
        )
    scored = objectives(trials, benchmark.metric_directions)
    trials = [
        Trial(t.values, t.state, objective, t.metrics, t.error)
        for t, objective in zip(trials, scored, strict=True)
    ]
    if any(t.objective is not None and not math.isfinite(t.objective) for t in trials):
        raise TuningError("a trial's objective is not finite")
    validation_size = split_size(
        validation_data, benchmark.tasks, multi_input=benchmark.multi_input
    )
    return Tuning(choose(trials), trials, protocol.tuning_trials, validation_size)


def chosen_values(
    factory: sessionmaker[Session], submission_id: int, spec: Mapping[str, Any]
) -> dict[str, Any]:
    """The values a submission's jobs train with: its stored tuning's, else a new tuning's.

    The new tuning is stored in its own transaction; if another dispatcher stored
    one first, that one's values are used (`db.tunings.store_tuning`).
    """
    with factory() as session:
        stored = tuning_of(session, submission_id)
    if stored is None:
        done = tune_spec(spec)
        stored = store_tuning(
            factory,
            submission_id,
            chosen=done.chosen,
            trials=[t.as_dict() for t in done.trials],
            trial_budget=done.trial_budget,
            validation_size=done.validation_size,
            objective=OBJECTIVE,
        )
    return dict(stored["chosen"])
