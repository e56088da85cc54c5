# Two entry points, both idempotent (finished set-up steps are skipped):
#   make repro   set up, then run the whole pipeline (dvc repro)
#   make test    set up, then run the test suite
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
MIRROR := /usr/share/datasets/fashion-mnist

.PHONY: setup dataset plots-template repro test bench lint
.DEFAULT_GOAL := repro

setup: $(VENV)/.installed dataset plots-template

# The package with its `study` extra (the pipeline: dvc, pyyaml, pandas, matplotlib, tqdm) and its `dev` extra
# (tests, lint, benchmark, curvlinops); a bare `pip install .` gives the probes only. Every pin is in
# pyproject.toml, the one source. Its [build-system] setuptools goes first: it builds the editable install
# without build isolation (a new venv's is too old). pip, not uv/poetry: torch and torchvision come from the
# machine's local wheel store.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet $$($(PY) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"])')
	$(PY) -m pip install --quiet --no-build-isolation -e '.[study,dev]'
	touch $@

# The Debian/Ubuntu mirror where we can install it; otherwise the download stage uses the upstream URLs.
dataset:
	@if [ -f $(MIRROR)/train-images-idx3-ubyte.gz ]; then \
	  echo "dataset mirror present: $(MIRROR)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -q && apt-get install -y -q dataset-fashion-mnist) \
	    || echo "warning: apt-get could not install dataset-fashion-mnist; the download stage will use the upstream URLs"; \
	else \
	  echo "note: $(MIRROR) missing and not root on Debian/Ubuntu; the download stage will use the upstream URLs"; \
	fi

# Offline `dvc plots show/diff`: Vega, Vega-Lite and vega-embed (pinned in package-lock.json) inlined
# into $(PLOTS_TEMPLATE), which .dvc/config names (plots.html_template). npm ci runs only when
# node_modules is missing or older than package-lock.json. Without npm (or if npm ci fails) DVC's
# default page is written instead, so `dvc plots show` still works but needs network.
PLOTS_TEMPLATE := .dvc/plots_template.html
plots-template: $(VENV)/.installed
	@if ! command -v npm >/dev/null; then \
	  echo "warning: npm not found; cannot inline Vega, so dvc plots pages will need network (CDN)"; \
	  $(PY) tools/offline_plots_template.py --fallback -o $(PLOTS_TEMPLATE); \
	elif [ -f node_modules/.installed ] && [ ! node_modules/.installed -ot package-lock.json ] \
	    || (npm ci --no-audit --no-fund && touch node_modules/.installed); then \
	  $(PY) tools/offline_plots_template.py node_modules -o $(PLOTS_TEMPLATE); \
	else \
	  echo "warning: npm ci failed; cannot inline Vega, so dvc plots pages will need network (CDN)"; \
	  $(PY) tools/offline_plots_template.py --fallback -o $(PLOTS_TEMPLATE); \
	fi

repro: setup
	dvc repro

# Several machines (README "Several machines"): one clone per machine or job, one DVC remote for all.
#   make shard VARIANT=cnn            the stages of that variant: its training, one stage per seed
#                                     (train_cnn@cnn-<seed>), and its probes, one stage each looping over
#                                     the seeds (robustness@cnn, slice@cnn, curvature@cnn; in the
#                                     pipeline/<kind>/dvc.yaml files: --glob targets from
#                                     src/landscape/study/shape.py) and what they need, then their outputs
#                                     and run-cache entries to the remote
#   make collect                      every stage the shards ran is restored from the run-cache; aggregate and
#                                     plots run here
# A VARIANT that names no stage is refused: `dvc repro --glob` with no match would run the whole study.
# tests/test_shards.py runs both targets on the tiny test settings.
VARIANT := *
.PHONY: shard collect
shard: setup
	@dvc stage list --all --name-only | { while read -r s; do case "$$s" in *:*@$(VARIANT)|*:*@$(VARIANT)-*) exit 0;; esac; \
	  done; exit 1; } \
	  || { echo "make shard: no stage of the study matches VARIANT='$(VARIANT)' (see study: in params.yaml)" >&2; exit 1; }
	@set -f; targets=$$(PYTHONPATH=src python -m landscape.study.shape '$(VARIANT)') && [ -n "$$targets" ] || exit 1; \
	  echo "dvc repro --pull --glob" $$targets; dvc repro --pull --glob $$targets
	dvc push --run-cache

collect: setup
	dvc repro --pull

# Two workers (this CPU's cores), each taking whole test files (--dist loadfile), so that a file's module-scoped
# project stays on one worker; the session-wide reproduced tiny project is built once per worker that needs it.
test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile

# Side-by-side benchmark (not part of dvc repro; see bench/README.md): needs data/raw, and uses the
# trained models of seed 0 where a dvc repro has made them.
bench: setup
	$(PY) bench/bench.py

lint: setup
	$(VENV)/bin/ruff check src stages tests tools bench
	$(VENV)/bin/ruff format --check src stages tests tools bench
