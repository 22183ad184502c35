# The README's commands. `make install` once, then `make test`; `make demo` runs the main job.
.PHONY: install test lint demo bench clean cluster-up cluster-down docker-base image compose-test test-e2e test-stacks

VENV ?= .venv
# The stack `make install` puts in $(VENV): 4.1 (default), 4.0 or 3.5 (constraints/spark-$(SPARK).txt).
SPARK ?= 4.1
# The other stacks `make test-stacks` installs (each in .venv-<version>) and runs the end-to-end subset on.
OTHER_STACKS ?= 4.0 3.5
# The end-to-end subset: image and text ingest -> 2-rank training -> scoring, the Spark ML Estimator, a
# killed rank, and the dataset written on one stack read on the others.
E2E_TESTS = tests/test_stacks.py \
	tests/test_train_score.py::test_two_ranks_end_with_identical_weights_and_learn \
	tests/test_train_score.py::test_score_raw_files_matches_training_and_reconciles \
	tests/test_text_train_score.py::test_textcnn_two_ranks_learn_and_card_carries_the_vocabulary \
	tests/test_text_train_score.py::test_raw_text_scores_exactly_like_the_ingested_sequences \
	tests/test_ml.py::test_fit_trains_and_reports \
	tests/test_ml.py::test_transform_keeps_columns_adds_predictions_and_learns \
	tests/test_train_resilience.py::test_killed_rank_ends_job_fast_and_resume_matches_uninterrupted \
	tests/test_worker.py::test_our_daemon_prunes_before_every_task

install:
	SPARK=$(SPARK) VENV=$(VENV) bash scripts/install.sh

lint:
	$(VENV)/bin/ruff check sparkdl_pipe tests jobs
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests

test-e2e:
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider $(E2E_TESTS)

# Every other stack in its own venv (installed or brought up to date first), the end-to-end subset.
test-stacks:
	set -e; for v in $(OTHER_STACKS); do \
	  SPARK=$$v VENV=.venv-$$v bash scripts/install.sh; \
	  echo "[test-stacks] Spark $$v"; \
	  .venv-$$v/bin/python -m pytest -q -p no:cacheprovider $(E2E_TESTS); \
	done

demo:
	$(VENV)/bin/sparkdl-pipe demo --workdir sparkdl-demo

bench:
	$(VENV)/bin/sparkdl-pipe bench --size full --workdir sparkdl-bench --out benchmarks/results

clean:
	rm -rf sparkdl-demo sparkdl-bench spark-warehouse

# A Spark standalone cluster on this machine (README "Running on a cluster"): master + 2 workers,
# PID files and logs in $(CLUSTER_DIR). Extra options: CLUSTER_ARGS="--master-port 0 --ui-port 0".
CLUSTER_DIR ?= .cluster
CLUSTER_ARGS ?=

cluster-up:
	$(VENV)/bin/python -m sparkdl_pipe.cluster up --dir $(CLUSTER_DIR) $(CLUSTER_ARGS)

cluster-down:
	$(VENV)/bin/python -m sparkdl_pipe.cluster down --dir $(CLUSTER_DIR)

# The docker-compose cluster (README "docker-compose"); needs a Docker engine, not run by `make test`.
# docker-base: Debian 12 from Debian's packages as the local image sparkdl-pipe-base:bookworm (root,
# debootstrap), for machines with no container registry; `make image` uses it when it must.
docker-base:
	bash scripts/docker-base.sh

image:
	bash scripts/docker-image.sh

# Build the image, bring up master + 2 workers, run ingest -> 2-rank training -> scoring with
# spark-submit from the client container, check the results, then `down -v` (also on failure).
compose-test:
	bash scripts/compose-test.sh
