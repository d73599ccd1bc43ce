# cnirun developer entry points.  Every target first runs the (idempotent)
# setup steps it needs from scripts/setup.sh, so it works on a fresh Debian 12
# machine and costs a second or two once everything is in place.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

SETUP  := ./scripts/setup.sh
PYTHON := ./.venv/bin/python
PYTEST_ARGS ?=

.PHONY: help run test test-parallel test-unit bench setup clean

help:
	@echo "make run     set up (packages venv docker image) and run: cnirun --rm busybox ifconfig"
	@echo "make test    set up (packages venv docker podman image) and run the suite in one pytest -q session"
	@echo "make test-parallel  the same tests over parallel pytest workers: tests/run_parallel.py \$$(PYTEST_ARGS)"
	@echo "             (CNIRUN_TEST_WORKERS=N: N workers, default 5)"
	@echo "make test-unit    the tests that need no daemon (marker unit), over the same parallel workers"
	@echo "make bench   set up and run every bench/*.py with the venv's python"
	@echo "make setup   run all setup steps (see scripts/setup.sh --help)"
	@echo "make clean   remove .venv and caches"

run:
	@$(SETUP) packages venv docker image-docker
	@echo "cnirun: running a busybox container under docker on a CNI network and printing its interfaces: cnirun --rm busybox ifconfig"
	./.venv/bin/cnirun --rm busybox ifconfig
	@if ./.venv/bin/python -c 'import sys; from cnirun.oci.install.docker_runtime import registered_path; sys.exit(0 if registered_path() else 1)'; then \
		echo "cnirun: the cnirun OCI runtime is registered in dockerd: runs use the faster hook path when it was installed with this shell's NETCONFPATH, CNI_PATH and CNI_CACHE_DIR."; \
	else \
		echo; \
		echo "cnirun: that run used the sandbox path, which needs no daemon configuration: your container was held"; \
		echo "  at its entrypoint until its network was up. Detached runs (-d) take a helper container holding the"; \
		echo "  network namespace, a second container per run. The cnirun OCI runtime attaches from inside every"; \
		echo "  container start, -d included: run 'cnirun install docker-runtime' (adds a 'cnirun' runtime to"; \
		echo "  /etc/docker/daemon.json, keeping your other settings, and reloads dockerd; 'cnirun uninstall"; \
		echo "  docker-runtime' puts the file back). See \"How a container gets its network\" in README.md."; \
	fi

# One pytest session: what CI runs. test-parallel spreads the suite over five
# workers (about 9.5 minutes instead of 20 here) but still has collisions
# between modules that share fixed names and subnets, so it is not the default.
test:
	@$(SETUP) packages venv docker podman image
	@echo "cnirun: $(PYTHON) -m pytest -q --durations=15 $(PYTEST_ARGS)"
	@rc=0; $(PYTHON) -m pytest -q --durations=15 $(PYTEST_ARGS) || rc=$$?; $(call pytest_rc)

test-parallel:
	@$(SETUP) packages venv docker podman image
	@echo "cnirun: $(PYTHON) tests/run_parallel.py $(PYTEST_ARGS)"
	@rc=0; $(PYTHON) tests/run_parallel.py $(PYTEST_ARGS) || rc=$$?; $(call pytest_rc)

test-unit:
	@$(SETUP) packages venv
	@echo "cnirun: $(PYTHON) tests/run_parallel.py -m unit $(PYTEST_ARGS)"
	@rc=0; $(PYTHON) tests/run_parallel.py -m unit $(PYTEST_ARGS) || rc=$$?; $(call pytest_rc)

# The end of a test target: pytest's exit code $rc, 5 (nothing collected) taken as success.
define pytest_rc
if [[ $$rc -eq 5 ]]; then \
	echo "cnirun: pytest collected no tests (exit 5); treating as success"; \
elif [[ $$rc -ne 0 ]]; then \
	echo "cnirun: tests failed (exit $$rc)" >&2; exit $$rc; \
fi
endef

bench:
	@$(SETUP)
	@# Byte-compile first: with PYTHONDONTWRITEBYTECODE set, every cnirun
	@# process would otherwise recompile its modules and time that too.
	@$(PYTHON) -m compileall -q cnirun
	@# Each bench records its ratios in bench/results/latest.jsonl; bench/_plot.py
	@# draws them in bench/results/ratios.svg at the end (files named _* are not benches).
	@shopt -s nullglob; benches=(bench/[!_]*.py); \
	if (( $${#benches[@]} == 0 )); then \
		echo "cnirun: no benchmarks in bench/ (nothing to run)"; exit 0; \
	fi; \
	mkdir -p bench/results; : > bench/results/latest.jsonl; \
	failed=(); \
	for b in "$${benches[@]}"; do \
		echo "cnirun: bench $$b"; \
		$(PYTHON) "$$b" || failed+=("$$b"); \
	done; \
	$(PYTHON) bench/_plot.py bench/results/latest.jsonl bench/results/ratios.svg || true; \
	if (( $${#failed[@]} )); then echo "cnirun: failed benchmarks: $${failed[*]}" >&2; exit 1; fi

setup:
	@$(SETUP) packages venv docker podman image

clean:
	@for n in cnirun cnirun-hook cnirun-shim; do \
		if [[ -L /usr/local/bin/$$n && "$$(readlink /usr/local/bin/$$n)" == "$(CURDIR)/.venv/bin/$$n" ]]; then \
			rm -f /usr/local/bin/$$n; \
		fi; \
	done
	rm -rf .venv .pytest_cache *.egg-info
	find . \( -path ./.git -o -path ./.cache \) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
