# avatarium-lab: `make demo` serves the demo page on the embedded defaults; `make test` runs the whole suite.
# Both create/update .venv themselves and are fast when nothing changed (stamp files under .venv/).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
BUNDLE := avatarium_lab/widgets/static/avatar_view.js
LIVE_BUNDLE := avatarium_lab/widgets/static/live_app.js
JS_SRC := $(wildcard js/src/*.js) js/package.json js/package-lock.json
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# llama-cpp-python compiles from source (~11 min on 2 cores) the first time; pip keeps the built wheel in its
# cache, so later installs take seconds.
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: demo test install install-test js system-deps lint bench bench-lipsync bench-experiments train-aligner \
        live-providers clean

demo: install $(BUNDLE) $(LIVE_BUNDLE)
	$(VENV)/bin/avatarium demo $(if $(CONFIG),--config $(CONFIG))

test: install-test $(BUNDLE) $(LIVE_BUNDLE) system-deps
	$(VENV)/bin/ruff check avatarium_lab tests benchmarks examples
	$(PY) -m pytest $(PYTEST_ARGS)

install: $(VENV)/.stamp-install
install-test: $(VENV)/.stamp-test
js: $(BUNDLE) $(LIVE_BUNDLE)

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.stamp-install: pyproject.toml | $(PY)
	$(PIP) install -e .
	@touch $@

$(VENV)/.stamp-test: pyproject.toml $(VENV)/.stamp-install
	$(PIP) install -e '.[test]'
	@touch $@

# The front-end: three.js + GLTFLoader + our module, bundled by esbuild into one ES module from the lock file.
$(BUNDLE) $(LIVE_BUNDLE) &: $(JS_SRC)
	cd js && npm ci --no-audit --no-fund --loglevel=error && npm run build

# Debian packages the tests need: headless Chromium for the browser tests (Playwright drives the system browser;
# it never downloads one), and festival (HTS voice) and flite, the optional offline voices with timings.
SYSTEM_PACKAGES := chromium festival festvox-us-slt-hts flite
system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; fi

lint: install-test
	$(VENV)/bin/ruff check avatarium_lab tests benchmarks examples

# Optional: one short turn against each real vendor API whose key is set (skipped otherwise; never in CI).
live-providers: install-test
	$(PY) -m pytest tests/live -m live -p no:nbmake -o addopts="" -v

bench: install $(BUNDLE)
	$(PY) benchmarks/turn_latency.py

bench-lipsync: install system-deps
	$(PY) benchmarks/lipsync.py

bench-experiments: install
	$(PY) benchmarks/experiments.py

# Optional: retrain the neural aligner (torch + torchaudio: a large download; never part of demo or test).
# Resumable: rerunning continues from experiments/aligner/checkpoints/.
train-aligner: install system-deps
	$(PIP) install -e '.[train]'
	$(PY) datasets/lipsync/make_reference.py
	$(PY) experiments/aligner/train.py

clean:
	rm -rf $(VENV) js/node_modules $(BUNDLE) $(LIVE_BUNDLE) test-artifacts .pytest_cache
