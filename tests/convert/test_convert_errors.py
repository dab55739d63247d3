"""Bad inputs to `llmlab convert` / `load_model`: one clear error, exit status 2, and no output left behind."""

import json

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from tiny_models import tiny_hf_llama

from llmlab.models import load_model
from llmlab.recipes.convert import convert


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf")
    fields = dict(num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=None, tie_word_embeddings=False)
    tiny_hf_llama(0, vocab_size=64, max_position_embeddings=2048, **fields).save_pretrained(d)
    return d


def copy_dir(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def assert_nothing_left(parent, name):
    assert not (parent / name).exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(f".{name}")], "temporary output left behind"


def test_truncated_safetensors(tmp_path, hf_dir, capsys):
    bad = copy_dir(hf_dir, tmp_path / "bad")
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_model(bad)
    code, _, err = run_cli(["convert", "--from", str(bad), "--to", str(tmp_path / "out")], capsys)
    assert code == 2 and err.startswith("llmlab: error:") and "truncated" in err
    assert len(err.strip().splitlines()) == 1
    assert_nothing_left(tmp_path, "out")


def test_corrupt_safetensors_header(tmp_path, hf_dir):
    bad = copy_dir(hf_dir, tmp_path / "bad")
    (bad / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ValueError, match="corrupt"):
        convert(bad, tmp_path / "out")
    assert_nothing_left(tmp_path, "out")


def test_missing_shard_named(tmp_path, hf_dir):
    bad = copy_dir(hf_dir, tmp_path / "bad")
    (bad / "model.safetensors").unlink()
    (bad / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"x": "model-00001-of-00002.safetensors"}})
    )
    with pytest.raises(FileNotFoundError, match="model-00001-of-00002"):
        load_model(bad)


def test_truncated_gguf(tmp_path, hf_dir, capsys):
    convert(hf_dir, tmp_path / "m.gguf")
    data = (tmp_path / "m.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) - 100])
    code, _, err = run_cli(["convert", "--from", str(tmp_path / "cut.gguf"), "--to", str(tmp_path / "out")], capsys)
    assert code == 2 and err.startswith("llmlab: error:") and "truncated" in err
    assert_nothing_left(tmp_path, "out")
    (tmp_path / "junk.gguf").write_bytes(b"NOPE" + bytes(64))
    with pytest.raises(ValueError, match="not a valid GGUF"):
        load_model(tmp_path / "junk.gguf")


def test_unsupported_gguf_tensor_type(tmp_path):
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter

    qtype = GGMLQuantizationType.IQ2_XXS
    block, nbytes = GGML_QUANT_SIZES[qtype]
    writer = GGUFWriter(str(tmp_path / "iq.gguf"), "llama")
    for key, value in (("block_count", 1), ("embedding_length", 256), ("feed_forward_length", 256), ("vocab_size", 4)):
        writer.add_uint32(f"llama.{key}", value)
    writer.add_uint32("llama.attention.head_count", 2)
    writer.add_tensor("token_embd.weight", np.zeros((4, nbytes * 256 // block), dtype=np.uint8), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match="IQ2_XXS"):
        convert(tmp_path / "iq.gguf", tmp_path / "out")
    assert_nothing_left(tmp_path, "out")


def test_unknown_architectures_are_named(tmp_path, hf_dir, capsys):
    xl = copy_dir(hf_dir, tmp_path / "xlnet")
    cfg = json.loads((xl / "config.json").read_text())
    (xl / "config.json").write_text(json.dumps({**cfg, "architectures": ["XLNetLMHeadModel"], "model_type": "xlnet"}))
    code, _, err = run_cli(["convert", "--from", str(xl), "--to", str(tmp_path / "out")], capsys)
    assert code == 2 and "XLNetLMHeadModel" in err and "LlamaForCausalLM" in err
    assert_nothing_left(tmp_path, "out")

    (tmp_path / "mamba").mkdir()
    (tmp_path / "mamba" / "model_config.json").write_text(json.dumps({"family": "mamba"}))
    with pytest.raises(ValueError, match="'mamba'.*supported"):
        load_model(tmp_path / "mamba")

    from llmlab.io.gguf import write_gguf

    write_gguf(tmp_path / "falcon.gguf", "falcon", {"falcon.block_count": 1}, {"x.weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="'falcon'"):
        load_model(tmp_path / "falcon.gguf")


def test_bad_options(tmp_path, hf_dir, capsys):
    with pytest.raises(ValueError, match="q8_0"):
        convert(hf_dir, tmp_path / "out", "hf", "q8_0")
    with pytest.raises(ValueError, match="format"):
        convert(hf_dir, tmp_path / "out", "onnx")
    convert(hf_dir, tmp_path / "exists")  # an earlier llmlab output: replaced only with --overwrite
    code, _, err = run_cli(["convert", "--from", str(hf_dir), "--to", str(tmp_path / "exists")], capsys)
    assert code == 2 and "--overwrite" in err
    with pytest.raises(FileNotFoundError):
        convert(tmp_path / "nowhere", tmp_path / "out")
    assert_nothing_left(tmp_path, "out")


def test_cli_success_and_overwrite(tmp_path, hf_dir, capsys):
    out = tmp_path / "out"
    code, printed, _ = run_cli(["convert", "--from", str(hf_dir), "--to", str(out)], capsys)
    assert code == 0 and "converted llama model" in printed
    (out / "stale.txt").write_text("old")  # inside an llmlab output: --overwrite replaces the whole folder
    code, printed, _ = run_cli(["convert", "--from", str(hf_dir), "--to", str(out), "--overwrite"], capsys)
    assert code == 0 and "converted llama model" in printed
    assert (out / "model_config.json").is_file() and not (out / "stale.txt").exists()
    assert isinstance(load_model(out), torch.nn.Module)
