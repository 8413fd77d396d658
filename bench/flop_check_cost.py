"""What the protocol's FLOP limit costs `mtlb validate`: CPU seconds in a fresh process.

    python bench/flop_check_cost.py [--spec submissions/examples/hps-dwa.yaml] [--repeat 3]

Each row is one fresh interpreter that imports the validator, then checks the
spec twice (`submissions.submit.check_file`): with the FLOP count as shipped,
and with `runners.protocol_checks.flops_per_image` replaced by 0 (no count).
CPU time (`time.process_time`), not wall time: the machine may be shared.
The first count in a process pays for importing `torch._dynamo`, which the
meta device's Python decompositions (batch norm, bilinear upsampling) and
`FlopCounterMode` import; later architectures cost a meta forward pass each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys, time
from pathlib import Path
started = time.process_time()
from submissions.submit import check_file
import runners.protocol_checks as checks
if sys.argv[2] == "off":
    checks.flops_per_image = lambda *args: 0
imported = time.process_time()
assert check_file(Path(sys.argv[1])).spec is not None
first = time.process_time()
check_file(Path(sys.argv[1]))
again = time.process_time()
print(json.dumps({"import": imported - started, "first": first - imported,
                  "again": again - first, "dynamo": "torch._dynamo" in sys.modules}))
"""


def probe(spec: Path, mode: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(spec), mode],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "submissions/examples/hps-dwa.yaml")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = {}
    for mode in ("off", "on"):
        runs = [probe(args.spec, mode) for _ in range(args.repeat)]
        rows[mode] = {k: statistics.median(float(r[k]) for r in runs) for k in runs[0]}
    print(f"{'FLOP count':>10} {'import s':>9} {'1st check s':>12} {'2nd check s':>12} dynamo")
    for mode, row in rows.items():
        print(
            f"{mode:>10} {row['import']:9.2f} {row['first']:12.3f} {row['again']:12.3f}"
            f" {bool(row['dynamo'])}"
        )
    off, on = rows["off"], rows["on"]
    total_off = off["import"] + off["first"]
    total_on = on["import"] + on["first"]
    ratio = total_on / total_off
    print(f"import + first check, on / off: {ratio:.2f}x (CPU, median of {args.repeat})")


if __name__ == "__main__":
    main()
