# The two commands: `make run` (set up, then run the app with a local service) and `make test`.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test test-newest dist setup setup-dev setup-dist lint format wasm bench clean

run: setup
	$(PY) -m veraltheim.client.ui.launch

test: setup-dev
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

# The suite with the newest release of every dependency, upper bounds ignored, in a scratch venv
# (build/newest-venv): whether the bounds in pyproject.toml can move up. Not part of CI.
test-newest:
	scripts/test-newest.sh

# Every installer this machine can build, into dist/ (packaging/README.md).
dist: setup-dist
	$(PY) packaging/build.py

setup:
	scripts/bootstrap.sh

setup-dev:
	scripts/bootstrap.sh --dev

setup-dist:
	scripts/bootstrap.sh --dist

# ruff, then qmllint over every QML view with the types of our Python QML module (scripts/qmllint.py)
lint: setup-dev
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(PY) scripts/qmllint.py

format: setup-dev
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

wasm: setup-dev
	$(PY) -m veraltheim.wasm.build

# bench/_*.py are the benchmarks' helpers (crowd, raw frames, native builds), not benchmarks
bench: setup-dev
	for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info tests/interop/node_modules
