#!/bin/bash
# Run the monitor through SLURM: 2 nodes x 16 tasks = 1 collector + 31 workers.
# Submit with: sbatch examples/slurm-monitor.sh monitor.yaml
#SBATCH --job-name=jf-monitor
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=16
#SBATCH --cpus-per-task=1
#SBATCH --time=12:00:00
#SBATCH --output=monitor-%j.log

set -euo pipefail
CONFIG=${1:-monitor.yaml}

# The site's MPI and the virtual environment with mpi4py built against it (see README).
module load mpi 2>/dev/null || true
source "${MONITOR_VENV:-$PWD/.venv}/bin/activate"

# One thread per rank: the ranks are the parallelism.
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# Check the configuration once before taking the nodes' time.
python -m monitor "$CONFIG" --check

# srun forwards SIGTERM at the end of the time limit: the monitor stops cleanly,
# prints its summary and closes its files. --kill-on-bad-exit ends the step if one rank dies.
srun --kill-on-bad-exit=1 python -m monitor "$CONFIG" --summary-json "summary-${SLURM_JOB_ID}.json"
