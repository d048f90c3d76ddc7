"""Run every benchmark (each prints ratios measured in one run) and write figures/bench.md."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from soundloc import paths

BENCHES = [
    ("spectrogram: batched torch vs numpy/scipy reference (97 Jura clips)", ["bench_spectrogram.py"]),
    ("range model: torch port vs TFLite interpreter (0.5 deg land gallery)", ["bench_ranges.py"]),
    ("retrieval: chunked torch top-1 vs numpy loop", ["bench_retrieval.py"]),
]


def main() -> int:
    here = Path(__file__).parent
    lines = [f"# Benchmarks ({datetime.now(timezone.utc):%Y-%m-%d}, CPU: ratios within one run; absolute times only on a GPU)", ""]
    for title, cmd in BENCHES:
        print(f"== {title}", flush=True)
        r = subprocess.run([sys.executable, str(here / cmd[0]), *cmd[1:]], capture_output=True, text=True)
        out = [ln for ln in r.stdout.strip().splitlines() if ln.strip()]
        last = out[-1] if out else f"(failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode})"
        print(last, flush=True)
        lines += [f"- **{title}**: {last}"]
    (paths.figures_dir() / "bench.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
