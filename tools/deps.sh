#!/usr/bin/env bash
# deps.sh - install what rotor's build and tests need, only what is missing.
#   Debian packages through apt-get (needs root, as on the dev and CI machines);
#   Python packages into .venv/ from tests/requirements.txt.
# Idempotent: a second run with everything present does nothing and is quick.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(build-essential pkg-config git libiniparser-dev libpcre2-dev libxxhash-dev
          libcmocka-dev libcjson-dev clang libclang-rt-14-dev cmake python3-venv
          openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools libevent-dev
          libcurl4-openssl-dev curl slurm-wlm munge libpmix-dev libucx-dev)

missing=()
for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "deps: installing Debian packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python: a virtual environment for tests, benchmarks and plots only.
REQ=tests/requirements.txt
STAMP=.venv/.req-$(sha1sum "$REQ" | cut -c1-12)
if [ ! -f "$STAMP" ]; then
    PY=${PYTHON:-python3}
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
    echo "deps: installing Python packages from $REQ into .venv (llama-cpp-python compiles llama.cpp: a few minutes)"
    # build llama.cpp for this CPU so the benchmark compares against its best
    export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
    export CMAKE_ARGS=${CMAKE_ARGS:-"-DGGML_NATIVE=ON"}
    .venv/bin/pip install -q --disable-pip-version-check -r "$REQ"
    rm -f .venv/.req-*
    touch "$STAMP"
fi

# aiperf (NVIDIA's benchmark, used by one integration test) in its own venv:
# its dependency pins clash with the test venv's (huggingface_hub, pillow).
REQ2=tests/requirements-aiperf.txt
STAMP2=.venv-aiperf/.req-$(sha1sum "$REQ2" | cut -c1-12)
if [ ! -f "$STAMP2" ]; then
    PY=${PYTHON:-python3}
    [ -x .venv-aiperf/bin/python ] || "$PY" -m venv .venv-aiperf
    echo "deps: installing aiperf into .venv-aiperf"
    .venv-aiperf/bin/pip install -q --disable-pip-version-check -r "$REQ2"
    rm -f .venv-aiperf/.req-*
    touch "$STAMP2"
fi
