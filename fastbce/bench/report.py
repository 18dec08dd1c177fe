"""The report of a run: BENCHMARKS.md (tables), BENCHMARKS.png (plot) and BENCHMARKS.json (raw)."""

import json
import os
import statistics

import numpy as np

from .calls import SMALL_CALLS
from .ceiling import ceiling_label
from .operations import FIRST_CALL_SIZE, OPERATIONS


class Results:
    """Look-ups into a results dictionary."""

    def __init__(self, results):
        self.raw = results
        self.meta = results["meta"]
        self.seconds = {(r["contender"], r["op"], r["size"], r["threads"]): r["seconds"]
                        for r in results["timings"]}
        self.threaded = {name: info["threaded"] for name, info in self.meta["contenders"].items()}
        self.threaded["ceiling"] = True
        names = self.contenders_with_results()
        self.reference = self.meta["reference"]
        if self.reference not in names:  # the auto backend was not measured: the first fastbce row
            self.reference = next((n for n in names if n.startswith("fastbce")), self.reference)

    def rate(self, contender, op, size, threads):
        """(elements per second, measured with 1 thread instead because it has none) or (None, _)."""
        seconds = self.seconds.get((contender, op, size, threads))
        if seconds is None and not self.threaded.get(contender, True):
            seconds = self.seconds.get((contender, op, size, 1))
            if seconds is not None:
                return size / seconds, threads != 1
        return (None, False) if seconds is None else (size / seconds, False)

    def contenders_with_results(self):
        names = {r["contender"] for r in self.raw["timings"]} - {"ceiling"}
        return [name for name in self.meta["contenders"] if name in names]

    def skip_reason(self, contender, op):
        for skip in self.raw["skips"]:
            if skip["contender"] == contender and skip["op"] == op:
                return skip["reason"]
        return None


def format_rate(rate):
    if rate is None:
        return "—"
    m = rate / 1e6
    return f"{m:,.0f}" if m >= 100 else f"{m:,.1f}" if m >= 1 else f"{m:.3f}"


def format_ratio(ratio):
    if ratio is None:
        return "—"
    return f"{ratio:,.0f}×" if ratio >= 100 else f"{ratio:.1f}×" if ratio >= 1 else f"{ratio:.2f}×"


def _fmt_size(size):
    exponent = int(round(np.log10(size)))
    return f"1e{exponent}" if 10**exponent == size else f"{size:,}"


def _fmt_bytes(n):
    if n is None:
        return "—"
    return f"{n / 2**20:,.0f} MiB" if n >= 2**20 else f"{n / 2**10:,.0f} KiB"


def markdown_report(results):
    r = Results(results)
    meta = r.meta
    sizes, ops, threads = meta["sizes"], meta["ops"], meta["threads"]
    size = max(sizes)
    small = min(sizes)
    reference = r.reference
    contenders = r.contenders_with_results()
    machine = meta["machine"]
    lines = ["# fastbce benchmarks", ""]
    lines += [f"Command: `{meta['command']}` ({meta['mode']} run), {meta['date']}.", ""]
    memory = f", {machine['memory_bytes'] / 2**30:.0f} GiB" if machine.get("memory_bytes") else ""
    lines += [f"Machine: {machine['cores']} cores ({machine['cpu']}, {machine['machine']}){memory}, "
              f"Python {machine['python']}; load average (1, 5, 15 min) before the run "
              f"{meta.get('load_before')}, after {meta.get('load_after')}.", ""]
    lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".", ""]
    fastbce_config = meta.get("fastbce_config")
    if fastbce_config:
        serialised = fastbce_config.get("numba calls serialised")
        lines += [f"fastbce configuration (`fastbce.show_config()`): default backend "
                  f"{fastbce_config['default backend']}, C kernel variant "
                  f"{fastbce_config.get('cython simd variant') or 'none (extension not built)'}, Numba "
                  f"threading layer {fastbce_config.get('numba threading layer')}, concurrent Numba calls "
                  f"{'serialised' if serialised else 'not serialised'}.", ""]
    layers = sorted({i["numba_threading_layer"] for i in results["info"] if i.get("numba_threading_layer")})
    if layers:
        lines += [f"Numba threading layer (fastbce[numba] and the ceiling): {', '.join(layers)}.", ""]
    waiting = meta.get("thread_waiting")
    if waiting:
        lines += ["Set in the environment of every contender: "
                  + ", ".join(f"`{name}={value}`" for name, value in waiting.items()) + ".", ""]
    lines += [
        f"Inputs: float32 predictions (probabilities, or logits) and float32 labels, 8 bytes per "
        f"element, the same arrays for every contender (int32 group ids for per-group). Elements/s = "
        f"predictions per second, median of at least {meta['min_repeats']} timed calls after a warm-up; "
        f"conversions into a library's own arrays (JAX, TensorFlow copy) are not timed. "
        f"**Ceiling** = a Numba `prange` pass that only reads the same inputs (reads them and writes "
        f"one float32 per element for gradients: into a preallocated array, or, where the operation "
        f"returns a new array, into a new array per call, whose fresh pages the OS zeroes on first "
        f"touch), measured in the same run: no BCE can be faster. **fastbce ×** = {reference} "
        f"elements/s ÷ the contender's, same operation, size and thread count (above 1: fastbce is faster). Each contender runs in its "
        f"own fresh process per thread count, pinned to that many cores, with every thread setting "
        f"(fastbce `n_threads`, `numba.set_num_threads`, `torch.set_num_threads`, threadpoolctl, "
        f"OMP/MKL/OpenBLAS variables, XLA_FLAGS, TF intra/inter-op threads) at that count. † = "
        f"a contender without threads: its 1-thread figure, compared with fastbce on all threads.", ""]

    lines += ["Operations: " + "; ".join(f"`{op}` = {OPERATIONS[op].title}" for op in ops) + ".", ""]

    def block(size_, title):
        out = [f"## {title}", ""]
        head = "| operation | contender |"
        rule = "| --- | --- |"
        for t in threads:
            label = "1 thread" if t == 1 else f"{t} threads"
            head += f" {label}: M elem/s | of ceiling | fastbce × |"
            rule += " ---: | ---: | ---: |"
        out += [head, rule]
        for op in ops:
            row = f"| {op} | ceiling ({ceiling_label(op)}) |"
            for t in threads:
                rate, _ = r.rate("ceiling", op, size_, t)
                row += f" {format_rate(rate)} | 100% | |"
            out.append(row)
            for name in contenders:
                rates = [r.rate(name, op, size_, t) for t in threads]
                if all(rate is None for rate, _ in rates):
                    continue
                label = f"**{name}**" if name == reference else name
                row = f"| {op} | {label} |"
                for t, (rate, borrowed) in zip(threads, rates):
                    ceiling, _ = r.rate("ceiling", op, size_, t)
                    ref, _ = r.rate(reference, op, size_, t)
                    fraction = f"{rate / ceiling:.0%}" if rate and ceiling else "—"
                    ratio = format_ratio(ref / rate) if rate and ref else "—"
                    row += f" {format_rate(rate)}{'†' if borrowed else ''} | {fraction} | {ratio} |"
                out.append(row)
        return out + [""]

    lines += block(size, f"Throughput at {size:,} elements")
    # Call overhead: microseconds per call at the smallest size, 1 thread.
    if small != size:
        lines += [f"## Time per call at {small:,} elements (µs, 1 thread): call overhead", ""]
        lines += ["| contender | " + " | ".join(ops) + " |", "| --- |" + " ---: |" * len(ops)]
        for name in ["ceiling", *contenders]:
            cells = []
            for op in ops:
                seconds = r.seconds.get((name, op, small, 1))
                cells.append("—" if seconds is None else f"{seconds * 1e6:,.0f}" if seconds >= 1e-4
                             else f"{seconds * 1e6:,.1f}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    # Call time of bce, bce_grad and score at FIRST_CALL_SIZE elements (fastbce/bench/calls.py).
    small = {(s["contender"], s["call"]): s["seconds"] for s in results.get("small", [])}
    if small:
        anchor = small.get(("numpy", "bce"))
        lines += [f"## Call time at {FIRST_CALL_SIZE:,} elements: bce, bce_grad, score (µs)", "",
                  "float32 probabilities and 0/1 labels, the worker with the most threads; NumPy: "
                  "the clipped formula and its gradient, PyTorch: `F.binary_cross_entropy` and "
                  "`autograd.grad`. In brackets: time over NumPy's clipped formula (bce).", "",
                  "| contender | " + " | ".join(SMALL_CALLS) + " |", "| --- |" + " ---: |" * len(SMALL_CALLS)]
        for name in contenders:
            if not any((name, call) in small for call in SMALL_CALLS):
                continue
            cells = []
            for call in SMALL_CALLS:
                seconds = small.get((name, call))
                cells.append("—" if seconds is None else f"{seconds * 1e6:,.1f}" + (
                    f" ({seconds / anchor:.2f}×)" if anchor else ""))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    # First call per operation, empty Numba cache, each in a fresh process.
    cold_calls = [s for s in results["startup"] if s["cold_cache"]]
    if cold_calls:
        lines += ["## Numba cold start: first call per operation, empty cache, fresh process", "",
                  f"Import excluded; the operation on {FIRST_CALL_SIZE:,} elements, compiling every "
                  "kernel it needs (`NUMBA_CACHE_DIR` set to an empty folder).", "",
                  "| operation | first call (s) |", "| --- | ---: |"]
        lines += [f"| {s['first_op']} | {s['first_call_s']:.1f} |" for s in cold_calls]
        lines.append("")
    # Startup and memory.
    startup = {}
    for s in results["startup"]:  # the first cold-cache call (mean) beside the warm one
        startup.setdefault((s["contender"], s["cold_cache"]), s)
    memory = {(m["contender"], m["op"]): m for m in results["memory"]}
    if startup or memory:
        msize = meta.get("memory_size")
        lines += ["## Start-up time and peak extra memory", ""]
        lines += [
            f"Import = importing the contender's modules in a fresh process after `import numpy` "
            f"(numpy itself took {_median_numpy_import(results)}). First call = preparing and running "
            f"its first operation on {FIRST_CALL_SIZE:,} elements right after (Numba loads or compiles "
            f"kernels, JAX/TensorFlow trace and compile). Peak extra memory = RSS high-water mark "
            f"(Linux VmHWM, reset through /proc/self/clear_refs just before the call) minus RSS before "
            f"the call, at {f'{msize:,}' if msize else '(not measured in this run)'} elements, in the contender's worker process; it includes the returned result (the gradient array) and every native "
            f"allocation. In brackets: multiple of the operation's input bytes. This is the steady "
            f"state (second call at that shape); where the first call at that shape (compilation, "
            f"tracing, filling a library's buffer pool, which it then keeps) peaked much higher, the "
            f"cell says so.", ""]
        head = "| contender | import (s) | first call (s) |" + "".join(f" {op} |" for op in ops)
        lines += [head, "| --- | ---: | ---: |" + " ---: |" * len(ops)]
        for name in contenders:
            s = startup.get((name, False))
            cells = [f"{s['import_s']:.2f}", f"{s['first_call_s']:.2f}"] if s else ["—", "—"]
            cold = startup.get((name, True))
            if cold:
                cells[1] += f" ({cold['first_call_s']:.2f} cold cache)"
            for op in ops:
                m = memory.get((name, op))
                if m is None or m["peak_extra_bytes"] is None:
                    cells.append("—")
                    continue
                cell = f"{_fmt_bytes(m['peak_extra_bytes'])} ({m['peak_extra_bytes'] / m['input_bytes']:.1f}×)"
                first = m.get("first_call_peak_extra_bytes")
                if first is not None and first > max(2 * m["peak_extra_bytes"], 8 * 2**20):
                    cell += f"; first call {_fmt_bytes(first)}"
                cells.append(cell)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    # What each contender calls, and what was skipped.
    lines += ["## Contenders", ""]
    for name, info in meta["contenders"].items():
        if info["skipped"]:
            lines.append(f"- **{name}**: skipped, {info['skipped']}.")
            continue
        lines.append(f"- **{name}**{'' if info['threaded'] else ' (no threads)'}:")
        for op in ops:
            if op in info["calls"]:
                lines.append(f"  - {op}: `{info['calls'][op]}`")
            else:
                reason = r.skip_reason(name, op) or info["unsupported"].get(op, "not measured")
                lines.append(f"  - {op}: not measured ({reason})")
    unavailable = [op for op in OPERATIONS.values() if op.unavailable]
    for op in unavailable:
        lines.append(f"- Operation **{op.name}** ({op.title}): not measured, {op.unavailable}.")
    if results["errors"]:
        lines += ["", "## Errors", ""]
        for error in results["errors"]:
            lines.append(f"- {error.get('contender')} {error.get('op', '')} {error.get('size', '')} "
                         f"{error.get('threads', '')} threads: {error.get('error')}")
    lines += ["", f"Plot: `BENCHMARKS.png` (throughput against size, log-log, ceiling dashed). Raw "
              f"results: `BENCHMARKS.json`. Reproduce with `{meta['command']}`.", ""]
    return "\n".join(lines)


def _median_numpy_import(results):
    values = [s["numpy_import_s"] for s in results["startup"]]
    return f"{statistics.median(values):.2f} s" if values else "—"


_COLORS = {"fastbce[numba]": "tab:red", "fastbce[cython]": "tab:purple", "fastbce[numpy]": "tab:pink",
           "numpy": "tab:blue", "torch": "tab:orange", "sklearn": "tab:olive", "jax": "tab:green",
           "tensorflow": "tab:brown"}


def plot(results, path):
    """Throughput against size, log-log: one panel per operation, a row of panels per thread count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = Results(results)
    meta = r.meta
    ops, threads, sizes = meta["ops"], meta["threads"], sorted(meta["sizes"])
    contenders = r.contenders_with_results()
    columns = min(3, len(ops))
    rows_per = -(-len(ops) // columns)
    figure = plt.figure(figsize=(5.0 * columns, 3.3 * rows_per * len(threads) + 1.3), layout="constrained")
    subfigures = np.atleast_1d(figure.subfigures(len(threads), 1))
    for subfigure, t in zip(subfigures, threads):
        subfigure.suptitle(f"{t} thread{'s' if t > 1 else ''}", fontsize=14, fontweight="bold")
        axes = np.atleast_1d(subfigure.subplots(rows_per, columns, sharex=True)).reshape(-1)
        for axis, op in zip(axes, ops):
            xs = [s for s in sizes if r.rate("ceiling", op, s, t)[0]]
            axis.plot(xs, [r.rate("ceiling", op, s, t)[0] / 1e6 for s in xs], "k--", lw=2,
                      label="ceiling (stream read; read+write for gradients)")
            for name in contenders:
                points = [(s, r.rate(name, op, s, t)[0]) for s in sizes]
                points = [(s, v / 1e6) for s, v in points if v]
                if points:
                    style = "-" if r.threaded.get(name, True) else ":"
                    axis.plot(*zip(*points), style, marker="o", ms=3.5, lw=2.2 if name.startswith("fastbce[n")
                              else 1.5, color=_COLORS.get(name), label=name + ("" if r.threaded.get(name, True)
                                                                               else " (no threads)"))
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.set_title(f"{op}: {OPERATIONS[op].title}", fontsize=9)
            axis.grid(True, which="major", alpha=0.4)
            axis.grid(True, which="minor", alpha=0.12)
            axis.tick_params(labelsize=8)
            axis.set_xlabel("elements", fontsize=8)
            axis.set_ylabel("M elements/s", fontsize=8)
        for axis in axes[len(ops):]:
            axis.set_visible(False)
    handles, labels = {}, []
    for axis in figure.axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    figure.legend(list(handles.values()), list(handles), loc="outside lower center",
                  ncol=min(5, len(handles)), fontsize=10, frameon=False)
    figure.suptitle(f"fastbce benchmarks: throughput vs size ({meta['machine']['cores']} cores, "
                    f"{meta['machine']['cpu']}, {meta['date']})", fontsize=12)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def write_outputs(results, output_dir):
    md = os.path.join(output_dir, "BENCHMARKS.md")
    png = os.path.join(output_dir, "BENCHMARKS.png")
    raw = os.path.join(output_dir, "BENCHMARKS.json")
    with open(raw, "w") as file:
        json.dump(results, file, indent=1)
    with open(md, "w") as file:
        file.write(markdown_report(results))
    plot(results, png)
    return md, png, raw
