# `make demo` and `make test` set everything up in .venv/ on a machine with only
# Python 3.11+; MPI (mpirun included) comes from the mpich wheel.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
MPIRUN := $(VENV)/bin/mpirun
RANKS  ?= 8
STAMP  := $(VENV)/.installed

.PHONY: demo test test-unit test-mpi bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(STAMP)
	$(MPIRUN) -n $(RANKS) $(PY) -m monitor monitor.yaml

test: test-unit test-mpi

test-unit: $(STAMP)
	$(PY) -m pytest

# The MPI layer under real MPI, at the smallest pool and at a larger one than there are cores.
# `timeout` is the last guard: ranks of an in-process test suite that fall out of step would wait for ever.
MPI_TESTS := timeout -k 10 300 $(MPIRUN) -n
test-mpi: $(STAMP)
	$(MPI_TESTS) 2 $(PY) -m pytest --with-mpi -q -p no:cacheprovider tests/mpi
	$(MPI_TESTS) 5 $(PY) -m pytest --with-mpi -q -p no:cacheprovider tests/mpi

bench: $(STAMP)
	$(PY) benchmarks/bench_framework.py
	$(PY) benchmarks/bench_science.py
	$(PY) benchmarks/bench_assembler.py
	$(PY) benchmarks/bench_viewer_stall.py
	$(PY) benchmarks/bench_hit_files.py

clean:
	rm -rf $(VENV) output build *.egg-info
