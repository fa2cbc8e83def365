"""Reading what pgsim writes (a sweep's CSV, an experiment's JSON, a run's stats.json), running
pgsim, and writing tables and figures beside the data: shared by tools/plot and tools/reproduce.

Figures are drawn with matplotlib (Debian's python3-matplotlib, installed by ./setup) on its
file-only Agg backend, as SVG and PNG, with the SVG's ids and metadata fixed so that the same data
gives the same files."""
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams.update({
    "svg.hashsalt": "pgsim",      # deterministic element ids
    "svg.fonttype": "none",       # text stays text in the SVG
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.axisbelow": True,
})

SOURCE_DIR = Path(__file__).resolve().parent.parent


class DataError(Exception):
    """Input that cannot be read as pgsim's output: the message names the file."""


def number(text):
    """A CSV cell as a number (None when empty or not a number)."""
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return None


def statistic_names(folder):
    """The statistics and run fields the runs under `folder` reported (None when no run is there)."""
    names = None
    for report in sorted(Path(folder).glob("*/stats.json")):
        try:
            with open(report, encoding="utf-8") as f:
                r = json.load(f)
        except (OSError, json.JSONDecodeError):
            continue
        names = (names or set()) | set(r.get("stats", {})) | {f"run.{k}" for k in r.get("run", {})}
    return names


def read_sweep_csv(path, runs_folder=None):
    """A sweep's CSV: (header, matrix keys, rows as dicts). The matrix keys are the leading
    columns that are not statistics: the statistics are those a run of the sweep reported (its
    folder beside the CSV, or `runs_folder`); without a run to ask, the columns before the first
    that names a statistic group pgsim reports."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = reader.fieldnames or []
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from None
    if not header:
        raise DataError(f"{path}: empty CSV (expected a pgsim sweep's sweep.csv)")
    names = statistic_names(runs_folder or path.parent)
    keys = []
    for column in header:
        is_statistic = (column.startswith("run.") or ("*" in column) or
                        (column in names if names is not None else
                         column.startswith(("sim.", "cpu.insts", "vmm.traps", "vmm.leaks", "vmm.exits", "vmm.callouts",
                                            "vmm.hypercalls", "vmm.efficiency", "vmm.resource_control"))))
        if is_statistic:
            break
        keys.append(column)
    return header, keys, rows


def read_experiment_json(path):
    """An experiment's JSON (`pgsim demo`'s popek_goldberg.json): its runs."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}:{e.colno}: not JSON: {e.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise DataError(f"{path}: expected an experiment report with a 'runs' list (pgsim demo's JSON)")
    return data


def read_stats(run_dir):
    """A run's statistics (stats.json's 'stats' map)."""
    path = Path(run_dir) / "stats.json"
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)["stats"]
    except (OSError, KeyError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: no readable report ({e})") from None


def pgsim_binary():
    return Path(os.environ.get("PGSIM", SOURCE_DIR / "build" / "pgsim"))


def run_pgsim(arguments, quiet=False):
    """Runs pgsim with `arguments`; raises DataError with its output when it fails."""
    binary = pgsim_binary()
    if not binary.exists():
        raise DataError(f"{binary}: no pgsim binary (run ./setup, or set PGSIM)")
    command = [str(binary)] + [str(a) for a in arguments]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not quiet:
        sys.stdout.write(result.stdout)
    if result.returncode != 0:
        raise DataError(f"{' '.join(command)} exited with status {result.returncode}:\n{result.stdout[-3000:]}")
    return result.stdout


ITERS = re.compile(r"(^|\s)iters=(\d+)(\s|$)")


def iterations_of(cmdline):
    m = ITERS.search(cmdline or "")
    return int(m.group(2)) if m else None


def cmdline_value(cmdline, key):
    """The value of the guest command line's key=value word, None where it has none."""
    m = re.search(rf"(^|\s){re.escape(key)}=(\S+)", cmdline or "")
    return m.group(2) if m else None


def bench_of(cmdline):
    return cmdline_value(cmdline, "bench")


def without_iters(cmdline):
    return ITERS.sub(" ", cmdline).strip()


def per_iteration(rows, keys, columns):
    """Steady-state figures per iteration: runs that differ only in guest.cmdline's iters= are
    paired (the smallest and the largest count), and each column's difference is divided by the
    difference in iterations, so that boot and set-up cancel. Returns a list of dicts holding the
    other matrix values, 'workload' (the command line without iters=), 'iters' (the pair) and
    each column's per-iteration value."""
    groups = {}
    for row in rows:
        cmdline = row.get("guest.cmdline", "")
        n = iterations_of(cmdline)
        if n is None:
            continue
        ident = tuple((k, row[k]) for k in keys if k != "guest.cmdline") + (("workload", without_iters(cmdline)),)
        groups.setdefault(ident, []).append((n, row))
    out = []
    for ident, runs in groups.items():
        runs.sort(key=lambda r: r[0])
        if len(runs) < 2 or runs[0][0] == runs[-1][0]:
            continue
        (n0, r0), (n1, r1) = runs[0], runs[-1]
        entry = dict(ident)
        entry["iters"] = (n0, n1)
        for c in columns:
            a, b = number(r0.get(c)), number(r1.get(c))
            entry[c] = None if a is None or b is None else (b - a) / (n1 - n0)
        out.append(entry)
    return out


def markdown_table(header, rows):
    widths = [len(h) for h in header]
    cells = [[str(c) for c in row] for row in rows]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    line = lambda items: "| " + " | ".join(c.ljust(w) for c, w in zip(items, widths)) + " |"
    text = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    text += [line(row) for row in cells]
    return "\n".join(text) + "\n"


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def save_figure(fig, out_dir, stem):
    """Writes stem.svg and stem.png into out_dir; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.svg", out_dir / f"{stem}.png"]
    fig.savefig(paths[0], metadata={"Date": None, "Creator": "pgsim"}, bbox_inches="tight")
    fig.savefig(paths[1], dpi=110, metadata={"Software": "pgsim"}, bbox_inches="tight")
    plt.close(fig)
    return paths


def fmt(value, digits=0):
    if value is None:
        return "-"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"
