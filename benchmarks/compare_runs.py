"""Compare two builds from alternated `fastbce bench` runs: median and range per row.

Usage: python benchmarks/compare_runs.py 'OLD_GLOB' 'NEW_GLOB'
where each glob matches BENCHMARKS.json files of one build, e.g.
'benchmarks/results/redesign-old-vs-new/old*/BENCHMARKS.json'. Prints a Markdown table (M elements/s)
and marks the rows where every run of the new build is slower than every run of the old one.
"""

import glob
import json
import statistics
import sys


def rates(pattern):
    """{(operation, contender, threads): [M elements/s of each run]} of the matching result files."""
    rows = {}
    for path in sorted(glob.glob(pattern)):
        with open(path) as file:
            for t in json.load(file)["timings"]:
                rows.setdefault((t["op"], t["contender"], t["threads"]), []).append(
                    t["size"] / t["seconds"] / 1e6)
    return rows


def table(old, new):
    lines = ["| operation | contender | threads | old: median (range) | new: median (range) | new ÷ old |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for key in sorted(set(old) & set(new)):
        o, n = old[key], new[key]
        slower = key[1] != "ceiling" and max(n) < min(o)
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {statistics.median(o):,.0f} "
                     f"({min(o):,.0f}-{max(o):,.0f}) | {statistics.median(n):,.0f} "
                     f"({min(n):,.0f}-{max(n):,.0f}) | {statistics.median(n) / statistics.median(o):.2f}"
                     f"{' **every run slower**' if slower else ''} |")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        raise SystemExit(__doc__)
    print(table(rates(argv[0]), rates(argv[1])))


if __name__ == "__main__":
    main()
