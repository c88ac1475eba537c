# `make demo` and `make test` set everything up in .venv/ on a machine with only
# Python 3.11+; MPI (mpirun included) comes from the mpich wheel, the `mpich` extra.
# With a site MPI instead, install without that extra (README, "On a cluster");
# `make test-openmpi` does so with Debian's Open MPI in .venv-openmpi/.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
MPIRUN := $(VENV)/bin/mpirun
RANKS  ?= 8
STAMP  := $(VENV)/.installed

.PHONY: demo demo-eiger2 test test-unit test-mpi test-slurm test-two-nodes test-openmpi bench bench-scaling clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,mpich]'
	$(PY) -m monitor.precompile monitor.yaml
	touch $@

demo: $(STAMP)
	$(MPIRUN) -n $(RANKS) $(PY) -m monitor monitor.yaml

demo-eiger2: $(STAMP)
	$(MPIRUN) -n $(RANKS) $(PY) -m monitor examples/eiger2-stream2.yaml

test: test-unit test-mpi

# Includes tests/test_slurm.py: a one-node SLURM cluster where slurm-wlm and munge are
# installed and we are root (skipped, with the reason, elsewhere).
test-unit: $(STAMP)
	$(PY) -m pytest

# The MPI layer under real MPI, at the smallest pool and at a larger one than there are cores.
# `timeout` is the last guard: ranks of an in-process test suite that fall out of step would wait for ever.
# $(call MPI_LAYER_TESTS,MPIRUN,RANKS,PYTHON)
MPI_LAYER_TESTS = timeout -k 10 300 $(1) -n $(2) $(3) -m pytest --with-mpi -q -p no:cacheprovider tests/mpi
test-mpi: $(STAMP)
	$(call MPI_LAYER_TESTS,$(MPIRUN),2,$(PY))
	$(call MPI_LAYER_TESTS,$(MPIRUN),5,$(PY))

# The shipped batch script through sbatch and srun on a one-node cluster (root, slurm-wlm, munge).
test-slurm: $(STAMP)
	$(PY) -m pytest -q tests/test_slurm.py

# The shipped batch script across two SLURM nodes: two network/UTS/mount namespaces of this machine
# joined by a veth pair, one shared disk (root, slurm-wlm, munge, iproute2).
test-two-nodes: $(STAMP)
	$(PY) -m pytest -q tests/test_slurm_two_nodes.py

# A site MPI, for real: mpi4py built against Debian's Open MPI (apt-get install openmpi-bin
# libopenmpi-dev) in a venv of its own, then the MPI layer, a whole run and the SLURM tests
# (srun --mpi=pmix) on it. Open MPI needs --oversubscribe for more ranks than cores, and
# refuses root without --allow-run-as-root.
OMPI_VENV   ?= .venv-openmpi
OMPI_PY     := $(OMPI_VENV)/bin/python
OMPI_STAMP  := $(OMPI_VENV)/.installed
OMPI_MPICC  ?= mpicc.openmpi
OMPI_MPIRUN ?= mpirun.openmpi --oversubscribe $(if $(filter 0,$(shell id -u)),--allow-run-as-root)

$(OMPI_STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(OMPI_VENV)
	$(OMPI_PY) -m pip install --quiet --upgrade pip
	MPICC=$(OMPI_MPICC) $(OMPI_PY) -m pip install --quiet --no-binary=mpi4py --no-cache-dir mpi4py
	$(OMPI_PY) -m pip install --quiet -e '.[test]'
	touch $@

test-openmpi: $(OMPI_STAMP)
	$(call MPI_LAYER_TESTS,$(OMPI_MPIRUN),2,$(OMPI_PY))
	$(call MPI_LAYER_TESTS,$(OMPI_MPIRUN),5,$(OMPI_PY))
	$(OMPI_PY) -m pytest -q tests/test_open_mpi.py tests/test_slurm.py tests/test_slurm_two_nodes.py

bench: $(STAMP)
	$(PY) benchmarks/bench_framework.py
	$(PY) benchmarks/bench_science.py
	$(PY) benchmarks/bench_assembler.py
	$(PY) benchmarks/bench_viewer_stall.py
	$(PY) benchmarks/bench_hit_files.py

# The whole monitor under mpirun at N = 2, 4, ... ranks up to the cores, fed by a sender faster than it,
# on the direct and the receiver path; e.g. `make bench-scaling SCALING_ARGS="--ranks 2,3 --seconds 10"`.
SCALING_ARGS ?=
bench-scaling: $(STAMP)
	$(PY) benchmarks/bench_scaling.py $(SCALING_ARGS)

clean:
	rm -rf $(VENV) $(OMPI_VENV) output build *.egg-info
