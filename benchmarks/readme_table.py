"""Write the speed table of README.md from a result set of `fastbce bench`.

Usage:

    python benchmarks/readme_table.py benchmarks/results/<name> README.md

reads ``benchmarks/results/<name>/BENCHMARKS.json`` and replaces everything between the lines
``<!-- speed-table:start -->`` and ``<!-- speed-table:end -->`` of README.md with a table of the
headline figures: for each operation at the largest size and thread count of the run, the
ceiling, fastbce[cython] and fastbce[numba] in millions of elements per second with their
fraction of the ceiling, fastbce[cython] ÷ NumPy and ÷ PyTorch; the time per call on
1,000 elements; then the command, date and machine of the run (the result set holds every thread
count). The table is never edited by hand: ``tests/test_readme.py`` checks that README.md holds
what :func:`render` gives. Numbers are formatted as in `fastbce bench`'s own report.
"""

import json
import sys
from pathlib import Path

from fastbce.bench.report import format_rate, format_ratio

START = "<!-- speed-table:start -->"
END = "<!-- speed-table:end -->"

# Short names of the operations of `fastbce bench` (fastbce/bench.py, OPERATIONS); an operation
# missing here is shown by its name alone.
TITLES = {
    "mean": "mean, 0/1 labels",
    "mean_u8": "mean, uint8 labels",
    "mean_bool": "mean, bool labels",
    "mean_f64": "mean, float64",
    "mean_soft": "mean, soft labels",
    "mean_logits": "mean from logits",
    "weighted": "weights + pos_weight, logits",
    "per_label": "per label",
    "per_label_f": "per label, Fortran order",
    "per_sample": "per sample (100 columns)",
    "per_group": "per group (1,000 groups)",
    "grad": "gradient, new array",
    "grad_out": "gradient into `out=`",
    "value_and_grad": "loss + gradient, new array",
    "value_and_grad_out": "loss + gradient into `out=`",
    "focal": "focal loss, logits",
    "mean_f16": "mean, float16 predictions",
    "strided": "mean, every second element",
    "per_sample_pw": "pos_weight per sample",
    "file": "`fastbce score` of a Parquet file",
    "elements": "element losses",
    "elements_logits": "element losses, logits",
    "grad_hess": "gradient + Hessian",
    "focal_grad_hess": "focal gradient + Hessian",
    "roc_auc": "exact ROC-AUC",
    "average_precision": "exact average precision",
    "brier": "Brier score",
    "calibration": "calibration curve",
    "score": "score report (exact AUC)",
    "score_sums": "score report, sums only",
    "score_groups": "score by 1,000 groups",
    "accumulate": "Accumulator.update, 1e6 chunks",
    "accumulate_nohist": "the same, auc_bits=0",
    "score_groups_sums": "score by 1,000 groups, sums only",
    "hinge": "hinge", "squared_hinge": "squared hinge", "dice": "Dice", "tversky": "Tversky",
}
CYTHON, NUMBA, NUMPY, TORCH = "fastbce[cython]", "fastbce[numba]", "numpy", "torch"


class _Rates:
    """Elements per second of one result set, by (contender, op, threads), at its largest size."""

    def __init__(self, results):
        meta = results["meta"]
        self.size = max(meta["sizes"])
        self.seconds = {(r["contender"], r["op"], r["threads"]): r["seconds"]
                        for r in results["timings"] if r["size"] == self.size}
        self.threaded = {name: info.get("threaded", True)
                         for name, info in meta.get("contenders", {}).items()}

    def get(self, contender, op, threads):
        """Elements per second, or None. A contender without threads (NumPy) is compared at every
        thread count with its one-thread figure, as `fastbce bench` does."""
        seconds = self.seconds.get((contender, op, threads))
        if seconds is None and not self.threaded.get(contender, True):
            seconds = self.seconds.get((contender, op, 1))
        return None if seconds is None else self.size / seconds


def _machine_text(meta):
    machine = meta["machine"]
    parts = [f"{machine['cores']} cores ({machine['cpu']}, {machine['machine']})"]
    if machine.get("memory_bytes"):
        parts.append(f"{machine['memory_bytes'] / 2**30:.0f} GiB")
    parts.append(f"Python {machine['python']}")
    versions = meta.get("versions", {})
    parts += [f"{name} {versions[name]}" for name in ("numpy", "numba", "torch") if name in versions]
    return ", ".join(parts)


def render(result_set, readme_dir="."):
    """The text between the markers (without them) for the result set in folder ``result_set``
    (or its BENCHMARKS.json) at its largest thread count; its path is written relative to
    ``readme_dir``."""
    result_set = Path(result_set)
    path = result_set / "BENCHMARKS.json" if result_set.is_dir() else result_set
    results = json.loads(path.read_text(encoding="utf-8"))
    meta = results["meta"]
    rates = _Rates(results)
    t = max(meta["threads"])
    ops = [op for op in meta["ops"] if any(key[1] == op for key in rates.seconds)]
    try:
        shown = Path(path.parent).resolve().relative_to(Path(readme_dir).resolve()).as_posix()
    except ValueError:
        shown = path.parent.as_posix()

    lines = [
        f"Millions of elements per second at {rates.size:,} elements on {t} "
        f"thread{'s' if t > 1 else ''}; in brackets fastbce's fraction of the ceiling; **×** = "
        f"fastbce[cython] ÷ NumPy (one thread: it has none) or PyTorch; — = not measured.",
        "",
        "| operation | ceiling | fastbce[cython] | fastbce[numba] | × NumPy | × PyTorch |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for op in ops:
        ceiling = rates.get("ceiling", op, t)
        cells = [f"`{op}` {TITLES[op]}" if op in TITLES else f"`{op}`", format_rate(ceiling)]
        for name in (CYTHON, NUMBA):
            rate = rates.get(name, op, t)
            cells.append(format_rate(rate) + (f" ({rate / ceiling:.0%})" if rate and ceiling else ""))
        mine = rates.get(CYTHON, op, t)
        others = [rates.get(name, op, t) for name in (NUMPY, TORCH)]
        cells += [format_ratio(mine / other) if mine and other else "—" for other in others]
        lines.append("| " + " | ".join(cells) + " |")
    small = {(s["contender"], s["call"]): s["seconds"] for s in results.get("small", [])}
    if small:
        calls = sorted({call for _, call in small})
        text = "; ".join(
            f"{name} " + ", ".join(f"{call} {small[(name, call)] * 1e6:,.1f}" for call in calls
                                   if (name, call) in small)
            for name in (CYTHON, NUMBA, NUMPY, TORCH) if any((name, c) in small for c in calls))
        lines += ["", f"Time per call on 1,000 elements (µs): {text}."]
    layers = sorted({i["numba_threading_layer"] for i in results.get("info", [])
                     if i.get("numba_threading_layer")})
    environment = ", ".join(f"`{k}={v}`" for k, v in (meta.get("thread_waiting") or {}).items())
    lines += [
        "",
        f"Result set: [`{shown}`]({shown}/BENCHMARKS.md) (every thread count), {meta['date']}. "
        f"Command: `{meta['command']}`. Machine: {_machine_text(meta)}."
        + (f" Numba threading layer: {', '.join(layers)}." if layers else "")
        + (f" Environment: {environment}." if environment else ""),
    ]
    return "\n".join(lines)


def splice(readme_text, table):
    """``readme_text`` with the text between the marker lines replaced by ``table``."""
    head, start, rest = readme_text.partition(START + "\n")
    old, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"README must hold the lines {START} and {END}, in that order")
    return f"{head}{START}\n{table}\n{END}{tail}"


def between_markers(readme_text):
    """The text between the marker lines (without them), or None."""
    _, start, rest = readme_text.partition(START + "\n")
    table, end, _ = rest.partition("\n" + END)
    return table if start and end else None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python benchmarks/readme_table.py benchmarks/results/<name> README.md", file=sys.stderr)
        return 2
    result_set, readme = Path(argv[0]), Path(argv[1])
    text = readme.read_text(encoding="utf-8")
    new = splice(text, render(result_set, readme.parent))
    readme.write_text(new, encoding="utf-8")
    print(f"{readme}: speed table from {result_set} ({'changed' if new != text else 'unchanged'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
