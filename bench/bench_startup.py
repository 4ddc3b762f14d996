"""CLI start-up: `faithflow --help` against `python -c "import typer"`, in the same run.

Goal (issue 2): `faithflow --help` takes at most 2× the bare Typer import. Prints medians and
the ratio; also lists which heavy modules `--help` imported (there should be none).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(cmd: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    python = sys.executable
    faithflow = shutil.which("faithflow", path=str(Path(python).parent)) or "faithflow"
    timed([faithflow, "--help"], 2)  # warm the file cache and .pyc files
    base = timed([python, "-c", "import typer"], args.runs)
    cli = timed([faithflow, "--help"], args.runs)
    b, c = statistics.median(base), statistics.median(cli)
    print(f"python -c 'import typer'  median {b * 1000:7.1f} ms  (min {min(base) * 1000:.1f})")
    print(f"faithflow --help          median {c * 1000:7.1f} ms  (min {min(cli) * 1000:.1f})")
    print(f"ratio {c / b:.2f}x  (goal <= 2.00x)  runs={args.runs}")
    heavy = ("sqlalchemy", "litestar", "alembic", "stripe", "httpx", "uvicorn", "psycopg")
    probe = (
        "import io, sys\n"
        "sys.argv = ['faithflow', '--help']\n"
        "out, sys.stdout = sys.stdout, io.StringIO()\n"
        "from faithflow_ops.cli import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        f"out.write(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    print(f"heavy modules imported by --help: {loaded or 'none'}")


if __name__ == "__main__":
    main()
