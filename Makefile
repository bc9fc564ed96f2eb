# The two commands of the README: `make demo` (the main job) and `make test`. Both set up .venv first.
.PHONY: setup test demo bench
VENV := .venv/bin

.venv/.ready: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

setup: .venv/.ready

# one pytest worker a core (at most 4), each file on one worker (module fixtures built once), one thread a worker:
# the suite is many small models, so processes, not threads, fill the cores
test: setup
	OMP_NUM_THREADS=1 $(VENV)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile

demo: setup
	$(VENV)/gift demo

bench: setup
	$(VENV)/python bench/run.py
