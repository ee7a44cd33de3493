#!/usr/bin/env bash
# The test suite: the workspace's Rust tests, then the Python package's (crates/sanity-py) in a
# fresh virtual environment (numpy, pandas, pytest and maturin from PyPI; no torch). Arguments go
# to `cargo test` (CI passes --locked). Needs cargo and python3 (3.9 or newer, with venv).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace "$@"

# The venv lives in target/ (ignored, removed by cargo clean); made afresh each time.
venv=target/python-test-venv
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check numpy pandas pytest 'maturin>=1.9.4,<2'
# The extension is built in the dev profile, on the dependencies `cargo test` just built.
VIRTUAL_ENV="$PWD/$venv" PATH="$PWD/$venv/bin:$PATH" maturin develop --quiet -m crates/sanity-py/Cargo.toml
# The command line the package is compared with, as `cargo test` built it.
SANITY_BIN="$PWD/target/debug/sanity" "$venv/bin/python" -m pytest crates/sanity-py/tests -q
