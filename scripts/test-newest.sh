#!/usr/bin/env bash
# `make test-newest`: the test suite in a scratch venv with the newest release of every
# dependency, our upper bounds ignored, to see whether the bounds in pyproject.toml can move up.
# Not part of CI (what it installs changes with every release). Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${NEWEST_VENV:-build/newest-venv}

scripts/bootstrap.sh --dev >/dev/null   # Debian packages, Node modules for the interop tests
rm -rf "$VENV"
$PYTHON -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip packaging
# The project itself without its dependencies, then every dependency by name alone.
"$VENV/bin/python" -m pip install -q --no-deps -e . > "$VENV/install.log" 2>&1 ||
  { cat "$VENV/install.log"; exit 1; }
mapfile -t names < <("$VENV/bin/python" - <<'PY'
import tomllib
from packaging.requirements import Requirement

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
reqs = list(project["dependencies"])
for extra in project.get("optional-dependencies", {}).values():
    reqs += extra
seen = set()
for text in reqs:
    req = Requirement(text)
    if req.name == project["name"] or (req.marker and not req.marker.evaluate({"extra": ""})):
        continue
    name = req.name + (f"[{','.join(sorted(req.extras))}]" if req.extras else "")
    if name not in seen:
        seen.add(name)
        print(name)
PY
)
echo "test-newest: installing the newest ${names[*]}"
"$VENV/bin/python" -m pip install -q --upgrade --upgrade-strategy eager "${names[@]}"
"$VENV/bin/python" -m pip list --format=freeze > "$VENV/installed.txt"
echo "test-newest: installed (everything: $VENV/installed.txt)"
"$VENV/bin/python" -c 'import sys, importlib.metadata as m
for n in sys.argv[1:]:
    print(f"  {n} {m.version(n.split(chr(91))[0])}")' "${names[@]}"
# pytest runs on the scratch venv's interpreter; tests that start programs use sys.executable.
QT_QPA_PLATFORM=offscreen "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
