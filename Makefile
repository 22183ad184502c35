# The README's commands. `make install` once, then `make test`; `make demo` runs the main job.
.PHONY: install test lint demo clean

VENV ?= .venv

install:
	bash scripts/install.sh

lint:
	$(VENV)/bin/ruff check sparkdl_pipe tests jobs
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests

demo:
	$(VENV)/bin/sparkdl-pipe demo --workdir sparkdl-demo

clean:
	rm -rf sparkdl-demo spark-warehouse
