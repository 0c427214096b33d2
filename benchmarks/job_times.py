"""Per-rule job times of the last run, from Snakemake's ``benchmark:`` files (``benchmarks/<stage>/...tsv``).

Prints one row per rule: jobs, summed job seconds, the longest job and the peak resident memory, so a user can
see where a ``make demo`` (or a cluster run) spends its time. Wall-clock time is less than the sum when jobs
run in parallel.

Run: .venv/bin/python benchmarks/job_times.py [benchmarks]   (or ``make timings``)
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

#: Stage folders whose benchmark files sit directly inside (one file per rule, named after the wildcard).
SINGLE_FILE_RULES: dict[str, str] = {"train": "train_regressor"}


def rule_of(path: Path, root: Path) -> str:
    """Rule name of a benchmark file: ``<stage>/<rule>/<job>.tsv`` or ``<stage>/<rule>.tsv``."""
    parts = path.relative_to(root).parts
    if len(parts) >= 3:
        return parts[1]
    return SINGLE_FILE_RULES.get(parts[0], path.stem)


def job_times(root: Path) -> list[dict[str, float | str | int]]:
    """Rows ``rule, jobs, total_s, max_s, max_rss_mb`` sorted by summed seconds (largest first)."""
    acc: dict[str, dict[str, float]] = defaultdict(lambda: {"jobs": 0, "total_s": 0.0, "max_s": 0.0, "rss": 0.0})
    for path in sorted(root.rglob("*.tsv")):
        with path.open() as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows or "s" not in rows[-1]:
            raise ValueError(f"{path}: not a Snakemake benchmark file (no 's' column); remove it or rerun the rule")
        seconds, rss = float(rows[-1]["s"]), float(rows[-1].get("max_rss") or 0.0)
        entry = acc[rule_of(path, root)]
        entry["jobs"] += 1
        entry["total_s"] += seconds
        entry["max_s"] = max(entry["max_s"], seconds)
        entry["rss"] = max(entry["rss"], rss)
    out = [{"rule": rule, "jobs": int(v["jobs"]), "total_s": v["total_s"], "max_s": v["max_s"], "max_rss_mb": v["rss"]}
           for rule, v in acc.items()]
    return sorted(out, key=lambda r: -float(r["total_s"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", nargs="?", default="benchmarks", type=Path)
    args = parser.parse_args()
    rows = job_times(args.root)
    if not rows:
        raise SystemExit(f"{args.root}: no benchmark files; run the workflow first (make demo)")
    print("| rule | jobs | job seconds (sum) | longest job (s) | peak RSS (MB) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| `{r['rule']}` | {r['jobs']} | {r['total_s']:.0f} | {r['max_s']:.0f} | {r['max_rss_mb']:.0f} |")
    print(f"| total | {sum(int(r['jobs']) for r in rows)} | {sum(float(r['total_s']) for r in rows):.0f} | | |")


if __name__ == "__main__":
    main()
