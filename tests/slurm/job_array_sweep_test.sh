#!/usr/bin/env bash
# A sweep of 2 x 2 short runs handed to a real Slurm (started on localhost for the test) as a job
# array: half of its tasks fail (their kernel file, late.elf, does not exist yet); `pgsim sweep --gather` names
# them by index and prints the sbatch command that runs just them; once the file exists, that
# command is submitted, and the gathered CSV is then byte for byte the CSV of the same sweep run
# locally. Exit status 77 (skipped) only where Slurm cannot start, with the reason printed.
#
# usage: job_array_sweep_test.sh PGSIM KERNEL SOURCE_DIR
set -euo pipefail
pgsim=$1
kernel=$2
source_dir=$3

work=$(mktemp -d /tmp/pgsim-slurm-test.XXXXXX)
cleanup() {
  "$source_dir/tools/slurm-localhost" stop "$work/slurm" || true
  rm -rf "$work"
}
trap cleanup EXIT
trap "exit 1" TERM INT  # so that a timeout still stops the daemons

fail() {
  echo "FAILED: $*" >&2
  exit 1
}

set +e
started=$("$source_dir/tools/slurm-localhost" start "$work/slurm" 2>"$work/slurm-start.err")
status=$?
set -e
if ((status == 3)); then
  echo "SKIPPED: Slurm cannot start on this machine:" >&2
  cat "$work/slurm-start.err" >&2
  exit 77
fi
((status == 0)) || fail "tools/slurm-localhost start exited with $status: $(cat "$work/slurm-start.err")"
eval "$started"  # export SLURM_CONF=...
echo "Slurm is up: $SLURM_CONF"

# Polls squeue until job $1 has no task pending or running (up to 300 s; the runs take about a
# second each).
wait_for_job() {
  local job=$1
  for _ in $(seq 1500); do
    if [[ -z $(squeue --noheader --jobs="$job" --format=%i 2>/dev/null) ]]; then
      # squeue can fail while the controller is busy: only an answer that succeeded counts.
      squeue --noheader --jobs="$job" >/dev/null 2>&1 && return 0
    fi
    sleep 0.2
  done
  squeue >&2 || true
  fail "job $job did not end within 300 s"
}

# sbatch's answer, "Submitted batch job N": N.
job_id() {
  sed -n 's/^Submitted batch job \([0-9]*\)$/\1/p' <<<"$1"
}

cd "$work"
cat >array.yaml <<YAML
base: $source_dir/configs/default.yaml
set:
  cpu.profile: x86-pg
  guest.cmdline: bench=memwalk iters=3000 ws=262144
matrix:
  vmm.strategy: [native, trap_emulate]
  guest.kernel: [$kernel, late.elf]
YAML

"$pgsim" sweep array.yaml --slurm
script=$work/results/array/sweep.sbatch
[[ -f $script ]] || fail "no $script"
answer=$(sbatch "$script")
first_job=$(job_id "$answer")
[[ -n $first_job ]] || fail "sbatch said: $answer"
echo "submitted the array as job $first_job"
wait_for_job "$first_job"

# Runs 1 and 3 (late.elf) failed; 0 and 2 are done.
set +e
"$pgsim" sweep array.yaml --gather >"$work/gather1.out" 2>"$work/gather1.err"
status=$?
set -e
cat "$work/gather1.out" "$work/gather1.err"
((status == 4)) || fail "the first --gather exited with $status, not 4"
grep -q "^pgsim sweep: run 1 (strategy-native.kernel-late-elf): no report: pgsim: config error: " "$work/gather1.err" ||
  fail "run 1's failure is not reported"
grep -q "^pgsim sweep: run 3 (strategy-trap_emulate.kernel-late-elf): no report: " "$work/gather1.err" ||
  fail "run 3's failure is not reported"
grep -q "^pgsim sweep: run [02] " "$work/gather1.err" && fail "a run that succeeded is reported as failed"
resubmit=$(grep "^  sbatch --array=" "$work/gather1.err") || fail "no sbatch command to resubmit"
[[ $resubmit == "  sbatch --array=1,3 '$script'" ]] || fail "the command to resubmit is '$resubmit'"
for task in 0 1 2 3; do
  [[ -f results/array/slurm-${first_job}_$task.out ]] || fail "task $task of the array did not run under Slurm"
done
[[ $(sed -n 2p results/array/sweep.csv) == native,$kernel,* ]] || fail "run 0's row: $(sed -n 2p results/array/sweep.csv)"
[[ $(sed -n 3p results/array/sweep.csv) == native,late.elf,no_report,* ]] ||
  fail "run 1's row: $(sed -n 3p results/array/sweep.csv)"

# The missing file appears; the printed command runs just the two failed tasks again.
cp "$kernel" late.elf
answer=$(eval "$resubmit")
second_job=$(job_id "$answer")
[[ -n $second_job ]] || fail "sbatch said: $answer"
echo "resubmitted runs 1 and 3 as job $second_job"
wait_for_job "$second_job"
ran=$(cd results/array && ls slurm-"${second_job}"_*.out | sort | tr '\n' ' ')
[[ $ran == "slurm-${second_job}_1.out slurm-${second_job}_3.out " ]] || fail "the resubmission ran: $ran"

"$pgsim" sweep array.yaml --gather || fail "the second --gather exited with $?"
"$pgsim" sweep array.yaml --results-dir local -j 2 2>/dev/null || fail "the local sweep exited with $?"
[[ $(wc -l <local/array/sweep.csv) == 5 ]] || fail "the local CSV is not 4 rows: $(cat local/array/sweep.csv)"
cmp results/array/sweep.csv local/array/sweep.csv || {
  diff results/array/sweep.csv local/array/sweep.csv >&2
  fail "the CSV gathered from Slurm differs from the local run's"
}
echo "PASSED: the CSV gathered from the Slurm job array equals the local sweep's ($(wc -c <local/array/sweep.csv) bytes)"
