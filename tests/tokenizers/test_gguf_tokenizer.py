"""Tokenizers rebuilt from GGUF metadata: SmolLM2 vs `transformers`, and llama.cpp's own reference vectors.

The llama.cpp vocabularies and their test vectors (`ggml-vocab-*.gguf` + `.inp`/`.out`) come from the
llama-cpp-python 0.3.9 sdist on PyPI, downloaded once into ~/.cache/llmlab-test-assets (never committed).
"""

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from llmlab.io.gguf import read_gguf
from llmlab.tokenizers.gguf import load_gguf_tokenizer, tokenizer_from_gguf_metadata

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LCPP = "llama_cpp_python-0.3.9"
CACHE = Path.home() / ".cache" / "llmlab-test-assets"
VOCABS = ("gpt-2", "starcoder", "llama-spm")  # byte-level BPE, digits-first BPE (SmolLM's), SentencePiece


@pytest.fixture(scope="session")
def llama_cpp_vocabs() -> Path:
    """Folder with llama.cpp's ggml-vocab-*.gguf(.inp/.out) files, fetched from PyPI on first use."""
    folder = CACHE / LCPP / "models"
    if all((folder / f"ggml-vocab-{v}.gguf{ext}").exists() for v in VOCABS for ext in ("", ".inp", ".out")):
        return folder
    CACHE.mkdir(parents=True, exist_ok=True)
    sdist = CACHE / f"{LCPP}.tar.gz"
    if not sdist.exists():  # pip is the ordinary client; --no-binary gets the sdist (it is never built)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "llama-cpp-python==0.3.9",
                "-d",
                str(CACHE),
            ],
            check=True,
            capture_output=True,
        )
    prefix = f"{LCPP}/vendor/llama.cpp/models/ggml-vocab-"
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()]
        for m in members:
            m.name = f"{LCPP}/models/{Path(m.name).name}"
        tar.extractall(CACHE, members=members, filter="data")
    return folder


def _cases(folder: Path, vocab: str) -> list[tuple[str, list[int]]]:
    """llama.cpp's test format: inputs separated by '\\n__ggml_vocab_test__\\n', one line of ids per input."""
    raw = (folder / f"ggml-vocab-{vocab}.gguf.inp").read_text(encoding="utf-8")
    inputs = raw.split("\n__ggml_vocab_test__\n")
    if inputs[-1] == "":
        inputs.pop()
    outputs = (folder / f"ggml-vocab-{vocab}.gguf.out").read_text(encoding="utf-8").split("\n")[: len(inputs)]
    return [(text, [int(t) for t in line.split()]) for text, line in zip(inputs, outputs, strict=True)]


@pytest.mark.parametrize("vocab", VOCABS)
def test_llama_cpp_reference_vectors(llama_cpp_vocabs: Path, vocab: str) -> None:
    md = read_gguf(llama_cpp_vocabs / f"ggml-vocab-{vocab}.gguf").metadata
    tok = tokenizer_from_gguf_metadata(md)
    cases = _cases(llama_cpp_vocabs, vocab)
    assert len(cases) == 46  # every case of the file (the last separator ends the file)
    wrong = [(text, ids) for text, ids in cases if tok.encode(text, add_special_tokens=False).ids != ids]
    assert wrong == []


@pytest.fixture(scope="module")
def smollm2_pair(smollm2_file, smollm2_transformers_tokenizer) -> tuple[dict, object]:
    return smollm2_file.metadata, smollm2_transformers_tokenizer


TEXTS = [
    "Hello world! How are you today?",
    "  leading spaces, trailing   ",
    "中文测试：你好，世界！我们今天学习机器学习和深度学习。",
    "混合 mixed 文本 text 123 四五六",
    "def f(x):\n    return x**2  # square\n\n\tprint(f(12345))",
    "emoji 🦙🚀😶\u200d🌫️ 👨\u200d👩\u200d👧 ❤️",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><repo_name>x<|im_end|><|im_end|>",
    "<|im_start|",  # almost a special token: plain text
    "numbers 3.14159 1,000,000 2024-11-23 0x1F",
    "\n\n\n   \t\t  \r\n",
    "Ça va? Führer naïve café — “quotes” ‘single’",
    "日本語のテキストと한국어 텍스트",
    "I'm you're we'll they've it's HE'S",
    "",
    " ",
]


def test_smollm2_ids_match_transformers(smollm2_pair) -> None:
    metadata, hf = smollm2_pair
    tok = tokenizer_from_gguf_metadata(metadata)
    for text in TEXTS:
        ids = tok.encode(text).ids
        assert ids == hf(text).input_ids, text
        assert tok.decode(ids, skip_special_tokens=False) == text
    assert tok.encode("<|im_start|>").ids == [1] and tok.get_vocab_size() == 49152


def test_llmlab_tokenizer_roles(smollm2_pair) -> None:
    metadata, hf = smollm2_pair
    tok = load_gguf_tokenizer(metadata)
    assert (
        (tok.bos_id, tok.eos_id, tok.pad_id, tok.unk_id)
        == (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id, hf.unk_token_id)
        == (1, 2, 2, 0)
    )
    assert tok.vocab_size == 49152
    assert tok.encode(TEXTS[2]) == hf(TEXTS[2]).input_ids
    assert tok.decode(tok.encode(TEXTS[5])) == TEXTS[5]


def test_bad_metadata_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no tokenizer"):
        tokenizer_from_gguf_metadata({"general.architecture": "llama"})
    md = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.tokens": ["a"],
        "tokenizer.ggml.merges": [],
        "tokenizer.ggml.pre": "klingon",
    }
    with pytest.raises(ValueError, match="unknown GGUF pre-tokenizer 'klingon'.*smollm"):
        tokenizer_from_gguf_metadata(md)
    with pytest.raises(ValueError, match="'rwkv' is not supported"):
        tokenizer_from_gguf_metadata({**md, "tokenizer.ggml.model": "rwkv"})
