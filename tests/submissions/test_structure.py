"""The registries' names without the registries: `components.json`, `schema.json` and the
structural check `mtlb validate` answers from without loading torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from db import session
from runners.registry import suggestion as registry_suggestion
from submissions import arguments, structure
from submissions.loader import parse
from submissions.spec import json_schema, validate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "submissions" / "examples"
REGENERATE = "regenerate: python -m submissions.structure --write"


def test_components_json_is_the_live_registries() -> None:
    assert structure.components() == structure.live_components(), REGENERATE


def test_schema_json_is_the_live_schema() -> None:
    assert json.loads(structure.SCHEMA.read_text()) == json_schema(), REGENERATE


def test_the_cli_copies_agree_with_their_originals() -> None:
    assert (arguments.URL_VARIABLE, arguments.DEFAULT_URL) == (
        session.URL_VARIABLE,
        session.DEFAULT_URL,
    )
    known = structure.components()["sections"]["weighting"]
    for name in ("pcgard", "dwaa", "zzzz", "equal"):
        assert structure.suggestion(name, list(known)) == registry_suggestion(name, list(known))


GOOD = (EXAMPLES / "hps-dwa.yaml").read_text()


@pytest.mark.parametrize(
    "text",
    [
        GOOD + "bogus: 1\n",
        GOOD.replace("name: dwa", "name: dwaa"),
        GOOD.replace("temperature: 2.0", "temperature: 2.0, temprature: 1"),
        GOOD.replace("benchmark: synthetic-scenes", "benchmark: synthetic-scene"),
        GOOD.replace("name: hard-sharing, ", ""),
        GOOD.replace("spec_version: 1\n", ""),
        GOOD.replace("name: dwa, temperature: 2.0", "name: rlw, seed: 3"),
        GOOD.replace("lr: 3.0e-3", "lr: 3.0e-3, momentum: 0.9"),
    ],
)
def test_structural_problems_are_the_full_validators_own_lines(text: str) -> None:
    """Every structural problem is one the full validator reports, in the same words."""
    document = parse(text.encode(), ".yaml")
    quick = [str(p) for p in structure.structural_problems(document)]
    spec, problems = validate(document)
    assert quick and spec is None
    assert set(quick) <= {str(p) for p in problems}


def test_valid_examples_have_no_structural_problem() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        assert structure.structural_problems(parse(path.read_bytes(), ".yaml")) == [], path


def test_rejecting_a_misspelt_key_loads_neither_torch_nor_sqlalchemy(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD + "bogus: 1\n")
    probe = (
        "import sys\n"
        "from submissions.cli import app\n"
        f"code = app(['validate', {str(bad)!r}], standalone_mode=False)\n"
        "print(code, sorted(m for m in ('torch', 'sqlalchemy', 'ray') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines()[-1] == "1 []", done.stdout + done.stderr
    assert f"{bad}: bogus: unknown field" in done.stderr
