// A sweep file (`pgsim sweep SWEEP.yaml`): a base config times a matrix of overrides.
//
//   name: tlb_shadow                  # optional; default: the file's stem
//   base: ../default.yaml             # relative to the sweep file
//   set:                              # optional: config keys set in every run
//     cpu.profile: x86-pg
//   matrix:                           # config key -> list of values; the runs are the cross product
//     vmm.strategy: [native, trap_emulate]
//     mmu.tlb.l1d.entries: [16, 64]
//   stats: [run.end, sim.cycles, "vmm.traps.*"]   # optional: the CSV's statistic columns
//
// Every run is the base config with `set:`, then its matrix values, then the command line's --set
// applied; the runs are ordered as nested loops over the matrix keys in the file's order (the
// first key varies slowest). Each run has an id made of its matrix values, stable from one
// invocation to the next, which is also its run.name and the name of its results folder.
#pragma once

#include <cstddef>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "platforms/cli/run_file.h"

namespace pgsim::cli {

// A bad sweep file or command line: the message names the file, line, column and key.
using SweepError = RunFileError;
// Where something stands in the sweep file.
using SweepLocation = FileLocation;

// One value of a matrix key, or of a key under `set:`.
struct SweepValue {
  std::string text;        // as written in the sweep file ("32", "[a, b]"): the CSV's cell
  // "key=value" for `pgsim run --set` (paths made absolute): one, or two for a vmm.strategy
  // value STRATEGY/PAGING, which sets vmm.paging as well.
  std::vector<std::string> assignments;
  SweepLocation at;
};

struct MatrixAxis {
  std::string key;      // a config key
  std::string label;    // the shortest ending of the key that tells it from the other matrix keys
  std::vector<SweepValue> values;
};

// A statistic to put in the CSV: a name ("sim.cycles", "run.end") or a pattern in which '*'
// stands for any text without a dot ("vmm.traps.*", "mmu.tlb.*.misses").
struct StatSelector {
  std::string pattern;
  SweepLocation at;
};

struct Sweep {
  std::filesystem::path file;  // as given
  std::string name;            // results/<name>/
  std::filesystem::path base;  // absolute
  std::vector<std::pair<std::string, SweepValue>> set;
  std::vector<MatrixAxis> matrix;
  std::vector<StatSelector> stats;  // the file's `stats:`, or the default selection
  bool default_stats = true;
};

// The statistics a sweep's CSV holds when the file names none: how each run ended, instruction
// and cycle counts with every cycle bucket, TLB misses and page walks, traps, leaks,
// resource-control violations and the share of directly executed instructions. No host-time
// figure, so that the same sweep gives the same CSV.
const std::vector<std::string>& default_sweep_stats();

struct SweepRun {
  size_t index = 0;
  std::string id;                      // run.name and results folder
  std::vector<size_t> choice;          // the value index on each matrix axis
  std::vector<std::string> overrides;  // everything `pgsim run` gets with --set, run.name last
  nlohmann::json config;               // the resolved config, as the run's stats.json holds it
};

// Reads and checks a sweep file; throws SweepError.
Sweep load_sweep(const std::filesystem::path& file);

// Every run of the sweep in matrix order, each config resolved and checked before any runs, with
// `command_line` (--set key=value) applied last. Throws SweepError naming the first bad value by
// its place in the sweep file.
std::vector<SweepRun> expand_sweep(const Sweep& sweep, const std::vector<std::string>& command_line);

}  // namespace pgsim::cli
