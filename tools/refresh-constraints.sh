#!/usr/bin/env bash
# Rewrites constraints.txt with the newest versions pyproject.toml allows, resolved in a fresh
# virtualenv. Then run tools/test.sh: commit the new constraints only if the whole suite passes.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --disable-pip-version-check --upgrade pip
PYTHONWARNINGS="ignore:Editable installation" \
  "$tmp/venv/bin/pip" install -q --disable-pip-version-check -e '.[test]'
{ grep '^#' constraints.txt; "$tmp/venv/bin/pip" freeze | grep -v -E '^(#|-e )'; } > "$tmp/new.txt"
mv "$tmp/new.txt" constraints.txt
git diff --stat -- constraints.txt
