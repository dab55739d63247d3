#!/usr/bin/env bash
# Build llama.cpp's llama-bench, llama-cli and llama-perplexity: the CPU inference reference that
# benchmarks/compress.py measures llmlab against (a benchmark oracle, never an llmlab dependency).
# Source: the llama.cpp vendored in the llama-cpp-python 0.3.9 sdist (PyPI). About 2-10 minutes on 2 cores.
#
#   bash benchmarks/build_llama_cpp.sh          # -> ${LLMLAB_CACHE:-~/.cache/llmlab}/llama.cpp/bin/llama-bench
set -euo pipefail
root="${LLMLAB_CACHE:-$HOME/.cache/llmlab}/llama.cpp"
if [ -x "$root/bin/llama-bench" ]; then echo "$root/bin/llama-bench"; exit 0; fi
mkdir -p "$root"
cd "$root"
python -m pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.9 -d . >/dev/null
tar xzf llama_cpp_python-0.3.9.tar.gz
src="$root/llama_cpp_python-0.3.9/vendor/llama.cpp"
cmake -S "$src" -B "$src/build" -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$src/build" -j"$(nproc)" --target llama-bench llama-cli llama-perplexity >/dev/null
ln -sfn "$src/build/bin" "$root/bin"
echo "$root/bin/llama-bench"
