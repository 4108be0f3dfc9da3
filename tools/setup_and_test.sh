#!/usr/bin/env bash
# Set up a virtual environment (torch first, pinned to the CPU wheel) and run the default tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q torch==2.13.0
pip install -q -e '.[test]'
ruff check hwsim tests tools
python -m pytest
