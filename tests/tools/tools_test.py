"""tools/plot and tools/reproduce on real pgsim runs: the figures exist, say what they show and are
the same for the same data; per-iteration figures are the difference of two iteration counts;
bad input is refused with the file named; a reproduction's table sets pgsim's classification
beside the paper's list."""
import csv
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(SOURCE / "tools"))
import pgsim_data  # noqa: E402

PGSIM = os.environ["PGSIM"]
KERNEL = os.environ["PGSIM_KERNEL_IMAGE"]


def run(*args):
    return subprocess.run([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=dict(os.environ, PGSIM=PGSIM))


class PlotOfASweep(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        d = Path(cls.dir.name)
        (d / "s.yaml").write_text(
            f"base: {SOURCE}/configs/default.yaml\nset:\n  guest.kernel: {KERNEL}\n  cpu.profile: x86-pg\n"
            "matrix:\n  vmm.strategy: [native, trap_emulate]\n"
            "  guest.cmdline: [bench=in iters=100, bench=in iters=1100]\n"
            "stats: [run.end, sim.cycles, \"sim.cycles.*\", \"vmm.traps.*\", mmu.walk.count, mmu.walk.refs]\n")
        r = run(PGSIM, "sweep", d / "s.yaml", "--results-dir", d / "results")
        assert r.returncode == 0, r.stdout
        cls.csv = d / "results" / "s" / "sweep.csv"

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def test_matrix_keys_are_told_from_statistics_by_the_runs_reports(self):
        header, keys, rows = pgsim_data.read_sweep_csv(self.csv)
        self.assertEqual(keys, ["vmm.strategy", "guest.cmdline"])
        self.assertEqual(len(rows), 4)

    def test_per_iteration_is_the_difference_of_two_iteration_counts(self):
        header, keys, rows = pgsim_data.read_sweep_csv(self.csv)
        per = {e["vmm.strategy"]: e for e in pgsim_data.per_iteration(rows, keys, ["sim.cycles", "vmm.traps.gp"])}
        by = {(r["vmm.strategy"], r["guest.cmdline"]): r for r in rows}
        for strategy in ("native", "trap_emulate"):
            a = float(by[(strategy, "bench=in iters=100")]["sim.cycles"])
            b = float(by[(strategy, "bench=in iters=1100")]["sim.cycles"])
            self.assertEqual(per[strategy]["sim.cycles"], (b - a) / 1000)
            self.assertEqual(per[strategy]["iters"], (100, 1100))
        # One port read an iteration: one #GP under trap_emulate. The guest's closing lines print
        # its cycle counts through the UART, each byte a port write that traps too, and those
        # differ by a few digits between the two counts: hence the thousand iterations apart.
        self.assertAlmostEqual(per["trap_emulate"]["vmm.traps.gp"], 1.0, delta=0.005)
        self.assertEqual(per["native"]["vmm.traps.gp"], 0.0)  # natively nothing traps into a VMM

    def test_figures_exist_name_what_they_show_and_are_deterministic(self):
        with tempfile.TemporaryDirectory() as out:
            r = run(SOURCE / "tools" / "plot", self.csv, "-o", out, "--per-iteration")
            self.assertEqual(r.returncode, 0, r.stdout)
            names = sorted(p.name for p in Path(out).iterdir())
            # A port read's iteration makes no page walk: that figure is left out, not drawn empty.
            self.assertEqual(names, sorted(f"{s}.{e}" for s in ("cycles_by_bucket", "vmm_entries", "slowdown")
                                           for e in ("svg", "png")))
            svg = (Path(out) / "cycles_by_bucket.svg").read_text()
            self.assertIn("cycles by bucket", svg)
            self.assertIn("vmm_trap", svg)            # a bucket only trap_emulate has
            self.assertIn("bench=in trap_emulate", svg)
            self.assertIn("slowdown against native", (Path(out) / "slowdown.svg").read_text())
            self.assertTrue((Path(out) / "slowdown.png").read_bytes().startswith(b"\x89PNG"))
            first = svg
            r = run(SOURCE / "tools" / "plot", self.csv, "-o", out, "--per-iteration")
            self.assertEqual(r.returncode, 0, r.stdout)
            self.assertEqual((Path(out) / "cycles_by_bucket.svg").read_text(), first)

    def test_bad_input_is_refused_naming_the_file(self):
        r = run(SOURCE / "tools" / "plot", "/nonexistent/sweep.csv")
        self.assertEqual(r.returncode, 2)
        self.assertIn("/nonexistent/sweep.csv: cannot read", r.stdout)
        with tempfile.TemporaryDirectory() as d:
            bad = Path(d) / "x.json"
            bad.write_text("{not json")
            r = run(SOURCE / "tools" / "plot", bad)
            self.assertEqual(r.returncode, 2)
            self.assertIn(f"{bad}:1:2: not JSON", r.stdout)
            r = run(SOURCE / "tools" / "plot", Path(d) / "x.txt")
            self.assertEqual(r.returncode, 2)
            self.assertIn("expected a .csv (pgsim sweep) or a .json (pgsim demo)", r.stdout)


class RobinIrvineReproduction(unittest.TestCase):
    def test_the_table_sets_the_classification_beside_the_papers_list(self):
        with tempfile.TemporaryDirectory() as out:
            r = run(SOURCE / "tools" / "reproduce", "robin-irvine", "--output", out)
            self.assertEqual(r.returncode, 0, r.stdout)
            with open(Path(out) / "robin_irvine" / "table.csv", newline="") as f:
                rows = list(csv.DictReader(f))
            paper = [row for row in rows if row["instruction (paper)"] != "-"]
            self.assertEqual(len(paper), 18)
            verdict = {row["instruction (paper)"]: row["pgsim violation"] for row in paper}
            self.assertEqual(verdict["INT n"], "no")  # privileged by execution: it is the trap
            self.assertEqual(sorted(k for k, v in verdict.items() if v != "yes"), ["INT n"])
            extra = sorted(row["pgsim forms"] for row in rows if row["instruction (paper)"] == "-")
            self.assertEqual(extra, ["IRETD", "LSS"])
            self.assertTrue(all(row["evidence"] for row in rows))
            self.assertIn("17 of the paper's 18 instructions", (Path(out) / "robin_irvine" / "table.md").read_text())


if __name__ == "__main__":
    unittest.main()
