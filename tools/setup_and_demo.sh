#!/usr/bin/env bash
# Set up a virtual environment (torch first, pinned to the CPU wheel) and run the main job:
# bit-exact emulation of the embedded digits demo CNN on HiSilicon NNIE.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q torch==2.13.0
pip install -q -e .
hwsim emulate --device nnie
