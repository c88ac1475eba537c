#!/bin/bash
# Run the monitor through SLURM: 2 nodes x 16 tasks = 1 collector + 31 workers.
#
#   sbatch examples/slurm-monitor.sh [CONFIG.yaml]        (default: monitor.yaml)
#
# Options given to sbatch override the #SBATCH lines, e.g. one node of 8 tasks:
#   sbatch --nodes=1 --ntasks-per-node=8 examples/slurm-monitor.sh my.yaml
# Run it from the project folder (or set MONITOR_VENV). The job's exit code is the
# monitor's: 0 when every frame was accounted for, 1 for errors in the run, 2 for a
# bad configuration or a launch that does not match the MPI.
#SBATCH --job-name=jf-monitor
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=16
#SBATCH --cpus-per-task=1
#SBATCH --time=12:00:00
#SBATCH --output=monitor-%j.log

set -euo pipefail
CONFIG=${1:-monitor.yaml}

# ---------------------------------------------------------------------------------------
# MPI SWITCH. As shipped: the `mpich` wheel that `make` installs in .venv/, which srun
# starts through PMI-2 (with srun's default PMI each task would be "rank 0 of 1").
# For the site's own MPI, export these before sbatch (or edit the defaults here):
#   MONITOR_VENV      a venv whose mpi4py is built against the site MPI (README, "On a cluster")
#   MONITOR_MODULES   the modules that provide that MPI, e.g. "openmpi/4.1"
#   MONITOR_SRUN_MPI  srun's --mpi type for it: pmix for Open MPI, pmi2 for MPICH and
#                     its derivatives (`srun --mpi=list` shows what this SLURM offers)
# `python -m monitor --version` names the library mpi4py runs on and the type it takes.
MONITOR_VENV=${MONITOR_VENV:-$PWD/.venv}
MONITOR_MODULES=${MONITOR_MODULES:-}
MONITOR_SRUN_MPI=${MONITOR_SRUN_MPI:-pmi2}
# ---------------------------------------------------------------------------------------

if [ -n "$MONITOR_MODULES" ]; then
    module load $MONITOR_MODULES
fi
# shellcheck source=/dev/null
source "$MONITOR_VENV/bin/activate"

# One thread per rank: the ranks are the parallelism.
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# Check the configuration once, in the batch step, before the tasks start; and compile the
# kernels once (numba caches them beside the package: a second job loads them in a second),
# so that the tasks do not all compile them at once while the detector sends.
python -m monitor --version
python -m monitor "$CONFIG" --check
python -m monitor.precompile "$CONFIG"

# Collector placement: `collector_rank: first` in the configuration makes task 0 (first
# node) the collector, `last` the last task (last node); --distribution=block keeps the
# numbering node by node. Its outputs go to the configuration's output_dir, one folder
# a run; the figures also go next to this job's log.
#
# Stopping: scancel (and the end of --time) sends SIGTERM to every task; the monitor stops
# taking frames, drains, writes its summary and closes its files. SLURM sends SIGKILL
# KillWait seconds later (`scontrol show config | grep KillWait`; 30 s by default).
# --kill-on-bad-exit ends the step when one rank dies.
SUMMARY=${MONITOR_SUMMARY:-monitor-${SLURM_JOB_ID}.summary.json}
status=0
srun --mpi="$MONITOR_SRUN_MPI" --distribution=block --kill-on-bad-exit=1 \
    python -m monitor "$CONFIG" --summary-json "$SUMMARY" || status=$?

# The job's exit code is the monitor's verdict, from its summary where the run ended in order:
# --kill-on-bad-exit may have terminated tasks that were exiting with it anyway, and srun then
# reports their signal (143) instead.
verdict=$(python -c 'import json, sys; s = json.load(open(sys.argv[1]))
print(s["exit_code"] if s.get("state") == "complete" else "")' "$SUMMARY" 2>/dev/null || true)
exit "${verdict:-$status}"
