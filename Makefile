# The two commands of the README: `make demo` (the main job) and `make test`. Both set up .venv first.
.PHONY: setup test demo bench
VENV := .venv/bin

.venv/.ready: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

setup: .venv/.ready

test: setup
	$(VENV)/python -m pytest -q

demo: setup
	$(VENV)/gift demo

bench: setup
	$(VENV)/python bench/run.py
