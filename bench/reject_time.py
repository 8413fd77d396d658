"""How long rejecting the worst spec files takes, next to accepting a valid one.

    python bench/reject_time.py [--repeat 7] [--runs 5] [--only in-process|process]

Two tables.  **In-process:**

Each input is the worst of its kind that fits the 64 KiB limit (billion
laughs, maximal nesting, 64 KiB of keys, of list items, of one string, a
60,000-digit integer, ...).  Each is checked as `mtlb validate` checks it
(`submissions.submit.check_file`: read, parse, validate against the schema
and the protocol), `--repeat` times after one warm-up; the table reports the
median time and the first problem, and the last line the worst ratio to the
valid spec.  **Whole process:** the wall time of `mtlb` commands as a user
runs them (a fresh interpreter each time: imports included), median of
`--runs`, with the ratio to `python -c pass` measured in the same run: what a
misspelt key, `mtlb --help` and `mtlb schema` cost, next to validating a good
spec in full (which loads the registries and torch).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from submissions.loader import MAX_BYTES
from submissions.submit import check_file

EXAMPLE = Path(__file__).resolve().parents[1] / "submissions" / "examples" / "hps-dwa.yaml"
HEAD = EXAMPLE.read_text()


def fill(make: Callable[[int], str], limit: int = MAX_BYTES) -> str:
    """The largest make(n) that fits the limit (make grows with n)."""
    low, high = 0, limit
    while low < high:
        mid = (low + high + 1) // 2
        if len(make(mid).encode()) <= limit:
            low = mid
        else:
            high = mid - 1
    return make(low)


def laughs() -> str:
    lines = ['lol0: &lol0 "lol"']
    lines += [f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return HEAD + "\n".join(lines) + "\n"


def block_nesting(n: int) -> str:
    return HEAD + "description:\n" + "".join("  " * (i + 1) + "a:\n" for i in range(n))


def keys_json(n: int) -> str:
    return json.dumps({f"k{i}": i for i in range(n)})


INPUTS: dict[str, tuple[str, str]] = {
    "valid spec (accepted)": (".yaml", HEAD),
    "billion laughs": (".yaml", laughs()),
    "nesting, YAML flow [[[...": (".yaml", fill(lambda n: HEAD + "description: " + "[" * n)),
    "nesting, YAML block": (".yaml", fill(block_nesting)),
    "nesting, JSON [[[...": (".json", fill(lambda n: "[" * n)),
    'nesting, JSON {"a":{...': (".json", fill(lambda n: '{"a":' * n)),
    "64 KiB of keys, YAML block": (
        ".yaml",
        fill(lambda n: HEAD + "".join(f"k{i}: {i}\n" for i in range(n))),
    ),
    "64 KiB of keys, YAML flow": (
        ".yaml",
        fill(lambda n: HEAD + "x: {" + ", ".join(f"k{i}: {i}" for i in range(n)) + "}\n"),
    ),
    "64 KiB of keys, JSON": (".json", fill(keys_json)),
    "64 KiB of keys in a section": (
        ".yaml",
        fill(lambda n: HEAD.replace("temperature: 2.0", ", ".join(f"k{i}: {i}" for i in range(n)))),
    ),
    "64 KiB list of numbers": (
        ".yaml",
        fill(lambda n: HEAD.replace("authors: [MTL Leaderboard]", "authors: [" + "1," * n + "1]")),
    ),
    "64 KiB list of strings": (
        ".yaml",
        fill(lambda n: HEAD.replace("authors: [MTL Leaderboard]", "authors: [" + "a," * n + "a]")),
    ),
    "64 KiB string": (".yaml", fill(lambda n: HEAD + "x: '" + "x" * n + "'\n")),
    "64 KiB plain multi-line string": (
        ".yaml",
        fill(lambda n: HEAD + "x: " + "word\n  " * n + "\n"),
    ),
    "64 KiB of escapes": (".yaml", fill(lambda n: HEAD + 'x: "' + "\\t" * n + '"\n')),
    "64 KiB key": (".yaml", fill(lambda n: HEAD + "x" * n + ": 1\n")),
    "integer of 60,000 digits, YAML": (
        ".yaml",
        HEAD.replace("temperature: 2.0", "temperature: 1" + "0" * 60_000),
    ),
    "integer of 60,000 digits, JSON": (".json", '{"spec_version": 1' + "0" * 60_000 + "}"),
    "float of 60,000 digits": (".yaml", HEAD.replace("lr: 1.0e-3", "lr: 0." + "1" * 60_000)),
    "unterminated JSON string of escapes": (".json", fill(lambda n: '{"a": "' + '\\"' * n)),
    "16,000 YAML documents": (".yaml", fill(lambda n: HEAD + "---\n" * n)),
    "64 KiB of anchors": (
        ".yaml",
        fill(lambda n: HEAD + "".join(f"a{i}: &a{i} 1\n" for i in range(n))),
    ),
    "1 MB file": (".yaml", HEAD + "x: " + "x" * 1024**2 + "\n"),
}


def process_times(runs: int) -> None:
    """Whole-process wall time of `mtlb` commands, median of `runs`, against `python -c pass`."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as directory:
        misspelt = Path(directory) / "misspelt.yaml"
        misspelt.write_text(HEAD + "bogus: 1\n")
        unknown = Path(directory) / "unknown-weighting.yaml"
        unknown.write_text(HEAD.replace("name: dwa", "name: dwaa"))
        malformed = Path(directory) / "malformed.yaml"
        malformed.write_text(HEAD + "x: [\n")
        mtlb = [sys.executable, "-m", "submissions.cli"]
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "mtlb --help": [*mtlb, "--help"],
            "mtlb schema": [*mtlb, "schema"],
            "mtlb validate (unknown key)": [*mtlb, "validate", str(misspelt)],
            "mtlb validate (unknown weighting)": [*mtlb, "validate", str(unknown)],
            "mtlb validate (malformed YAML)": [*mtlb, "validate", str(malformed)],
            "mtlb validate (valid spec, in full)": [*mtlb, "validate", str(EXAMPLE)],
        }
        rows = []
        for label, command in commands.items():
            subprocess.run(command, cwd=root, capture_output=True)  # warm the file cache
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                subprocess.run(command, cwd=root, capture_output=True)
                times.append(time.perf_counter() - started)
            rows.append((label, statistics.median(times)))
    base = rows[0][1]
    print(f"| command (whole process, median of {runs}) | s | x python -c pass |")
    print("|---|---:|---:|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.2f} | {seconds / base:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", choices=["in-process", "process"])
    args = parser.parse_args()
    if args.only != "in-process":
        process_times(args.runs)
        if args.only == "process":
            return
        print()
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for number, (label, (suffix, text)) in enumerate(INPUTS.items()):
            path = Path(directory) / f"input-{number}{suffix}"
            path.write_text(text, encoding="utf-8")
            check_file(path)  # warm-up: schema, imports
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                checked = check_file(path)
                times.append(time.perf_counter() - started)
            result = "accepted" if checked.spec is not None else str(checked.problems[0])
            if len(checked.problems) > 1:
                result += f" (+{len(checked.problems) - 1} more)"
            rows.append((label, path.stat().st_size, statistics.median(times) * 1e3, result))
    valid_ms = rows[0][2]
    print("| input | bytes | ms | result |")
    print("|---|---:|---:|---|")
    for label, size, ms, result in rows:
        print(f"| {label} | {size:,} | {ms:.2f} | {result[:90]} |")
    worst = max(rows[1:], key=lambda r: r[2])
    print(
        f"\nworst: {worst[0]}, {worst[2]:.2f} ms = {worst[2] / valid_ms:.1f}x the valid spec"
        f" ({valid_ms:.2f} ms)"
    )


if __name__ == "__main__":
    main()
