# Shared set-up for scripts/*: a Python 3.11 venv with edgenas installed (idempotent, quick when done).
PY="${PYTHON:-python3.11}"

ensure_venv() {
  if ! command -v "$PY" >/dev/null 2>&1; then
    echo "error: $PY not found; edgenas needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
    exit 1
  fi
  if [[ ! -x .venv/bin/python ]]; then
    echo "creating .venv with $PY" >&2
    "$PY" -m venv .venv
  fi
  # shellcheck disable=SC1091
  source .venv/bin/activate
  local stamp=.venv/.edgenas-installed
  if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
    echo "installing edgenas and its pinned dependencies into .venv (first run: a few minutes)" >&2
    python -m pip install -q --upgrade pip >/dev/null
    # torch is pinned to the CPU build (an unpinned torch pulls a multi-GB CUDA build).
    python -m pip install -q "torch==2.13.0"
    python -m pip install -q -e ".[test]"
    touch "$stamp"
  fi
}

ensure_browser() {
  # Headless chromium renders report.html in the report test (Debian package; skipped if absent).
  if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) >/dev/null 2>&1 \
      || echo "warning: could not install chromium; the report screenshot test will skip" >&2
  fi
}

ensure_datasets() {
  # Fashion-MNIST (IDX files under /usr/share/datasets/fashion-mnist/) for --data fashion-mnist,
  # its tests and scripts/bench_search.py --data fashion-mnist (Debian package; skipped if absent).
  if [[ ! -d /usr/share/datasets/fashion-mnist ]]; then
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dataset-fashion-mnist) >/dev/null 2>&1 \
        || echo "warning: could not install dataset-fashion-mnist; the Fashion-MNIST tests will skip" >&2
    else
      echo "warning: dataset-fashion-mnist is not installed (needs root: apt-get install dataset-fashion-mnist); the Fashion-MNIST tests will skip" >&2
    fi
  fi
}

ensure_cross_tools() {
  # aarch64 cross compiler + qemu + the aarch64 TVM runtime, for the ARM artifact checks.
  if [[ -x scripts/setup_cross ]] && [[ "${EDGENAS_SKIP_CROSS:-0}" != 1 ]]; then
    scripts/setup_cross >&2 || echo "warning: scripts/setup_cross failed; aarch64 checks will skip" >&2
  fi
}
