"""GGUF reading (metadata, dequantisation against hand-written ggml block formulas), writing, errors."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from llmlab.io.gguf import SUPPORTED_TYPES, read_gguf, write_gguf


def test_smollm2_metadata_and_tensor_index(smollm2_file) -> None:
    f = smollm2_file
    md = f.metadata
    assert f.version == 3 and f.architecture == "llama"
    assert md["llama.block_count"] == 30 and isinstance(md["llama.block_count"], int)
    assert md["llama.attention.head_count_kv"] == 3
    assert md["llama.rope.freq_base"] == 100000.0 and isinstance(md["llama.rope.freq_base"], float)
    assert md["tokenizer.ggml.add_bos_token"] is False  # bools decode to bool, not 0/1
    assert md["general.languages"] == ["en"]
    tokens = md["tokenizer.ggml.tokens"]
    assert len(tokens) == 49152 and tokens[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert md["tokenizer.ggml.token_type"][:2] == [3, 3] and len(md["tokenizer.ggml.merges"]) == 48900
    assert md["tokenizer.ggml.merges"][0] == "Ġ t"
    assert md["tokenizer.chat_template"].startswith("{% for message in messages %}")
    assert f.metadata_types["tokenizer.ggml.tokens"] == "ARRAY[STRING]"
    assert f.metadata_types["tokenizer.ggml.token_type"] == "ARRAY[INT32]"
    assert not any(k.startswith("GGUF.") for k in md)

    assert Counter(f.tensor_types.values()) == {"Q4_1": 210, "F32": 61, "Q8_0": 1}
    # PyTorch order (GGUF lists dims reversed): embedding (vocab, dim), Linear (out, in).
    assert f.tensor_shapes["token_embd.weight"] == (49152, 576)
    assert f.tensor_shapes["blk.0.ffn_down.weight"] == (576, 1536)
    assert f.tensor_shapes["blk.0.attn_k.weight"] == (192, 576)
    assert "output.weight" not in f.tensors  # tied embeddings


def _raw_rows(f, name: str) -> np.ndarray:
    return f.tensors._raw[name].data  # (rows, bytes) uint8 view into the file


def test_dequantize_q4_1_matches_ggml_block_formula(smollm2_file) -> None:
    # ggml block_q4_1: f16 d, f16 m, 16 bytes of nibbles; low nibbles are values 0..15, high ones 16..31.
    name = "blk.0.attn_q.weight"
    raw = _raw_rows(smollm2_file, name)[:4]  # 4 rows of 576 values = 18 blocks of 20 bytes each
    blocks = raw.reshape(-1, 20)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
    m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    qs = blocks[:, 4:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
    expected = (q * d + m).reshape(4, 576)
    got = smollm2_file.tensors[name][:4].numpy()
    np.testing.assert_array_equal(got, expected)
    assert smollm2_file.tensors[name].dtype == torch.float32


def test_dequantize_q8_0_matches_ggml_block_formula(smollm2_file) -> None:
    # ggml block_q8_0: f16 d, 32 int8 values; x = d * q.
    raw = _raw_rows(smollm2_file, "token_embd.weight")[100:103]
    blocks = raw.reshape(-1, 34)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)
    np.testing.assert_array_equal(smollm2_file.tensors["token_embd.weight"][100:103].numpy(), (q * d).reshape(3, 576))


def _q4_k_reference(block: bytes) -> np.ndarray:
    """ggml's dequantize_row_q4_K for one 256-value block, written out as in ggml-quants.c."""
    d = float(np.frombuffer(block[0:2], np.float16)[0])
    dmin = float(np.frombuffer(block[2:4], np.float16)[0])
    scales, qs = block[4:16], block[16:144]

    def scale_min(j: int) -> tuple[int, int]:
        if j < 4:
            return scales[j] & 63, scales[j + 4] & 63
        return (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4), (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4)

    y, q, i = [], 0, 0
    for _ in range(4):  # 4 x 64 values
        sc1, m1 = scale_min(i)
        sc2, m2 = scale_min(i + 1)
        y += [d * sc1 * (qs[q + k] & 0xF) - dmin * m1 for k in range(32)]
        y += [d * sc2 * (qs[q + k] >> 4) - dmin * m2 for k in range(32)]
        q, i = q + 32, i + 2
    return np.array(y, dtype=np.float32)


def _write_raw(path: Path, name: str, data: np.ndarray, qtype: str) -> None:
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor(name, data, raw_dtype=gguf.GGMLQuantizationType[qtype])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_dequantize_q4_k_matches_ggml_reference(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, size=(2, 144), dtype=np.uint8)  # 2 rows x 1 block of 256 values
    blocks[:, 0:4] = np.array([0.01, 0.002], dtype=np.float16).view(np.uint8)  # sane d, dmin
    _write_raw(tmp_path / "k.gguf", "w", blocks, "Q4_K")
    f = read_gguf(tmp_path / "k.gguf")
    assert f.tensor_types["w"] == "Q4_K" and f.tensor_shapes["w"] == (2, 256)
    expected = np.stack([_q4_k_reference(bytes(b)) for b in blocks])
    np.testing.assert_allclose(f.tensors["w"].numpy(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("qtype, block_bytes", [("Q8_0", 34), ("Q4_0", 18), ("Q4_1", 20)])
def test_torch_dequantisation_equals_gguf_quants(tmp_path: Path, qtype: str, block_bytes: int) -> None:
    """Q8_0/Q4_0/Q4_1 go through llmlab's torch kernels; they must equal the gguf package's numpy ones exactly."""
    from gguf import GGMLQuantizationType, quants

    rng = np.random.default_rng(1)
    blocks = rng.integers(0, 256, size=(6, 2 * block_bytes), dtype=np.uint8)  # 6 rows x 2 blocks of 32 values
    for b in range(2):  # sane float16 scales (and Q4_1 minima) in every block
        start = b * block_bytes
        n_f16 = 2 if qtype == "Q4_1" else 1
        blocks[:, start : start + 2 * n_f16] = rng.normal(0, 0.05, (6, n_f16)).astype(np.float16).view(np.uint8)
    _write_raw(tmp_path / "q.gguf", "w", blocks, qtype)
    got = read_gguf(tmp_path / "q.gguf").tensors["w"]
    expected = quants.dequantize(blocks, GGMLQuantizationType[qtype]).astype(np.float32)
    assert got.shape == (6, 64)
    np.testing.assert_array_equal(got.numpy(), expected)


def test_unsupported_type_names_tensor_type_and_supported(tmp_path: Path) -> None:
    import gguf

    w = gguf.GGUFWriter(str(tmp_path / "i.gguf"), "llama")
    w.add_tensor("blk.0.ids", np.arange(8, dtype=np.int32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    f = read_gguf(tmp_path / "i.gguf")  # reading the index works; dequantising the tensor does not
    with pytest.raises(ValueError, match=r"'blk\.0\.ids'.*I32.*Q4_K"):
        f.tensors["blk.0.ids"]
    assert "Q6_K" in SUPPORTED_TYPES and "BF16" in SUPPORTED_TYPES


def _small_model() -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(0)
    tensors = {
        "token_embd.weight": torch.randn(16, 64, generator=g),
        "blk.0.attn_norm.weight": torch.rand(64, generator=g) + 0.5,
        "blk.0.attn_q.weight": torch.randn(64, 64, generator=g) * 0.02,
        "blk.0.odd.weight": torch.randn(5, 7, generator=g),  # rows not a multiple of 32: Q8_0 falls back to F16
    }
    metadata = {
        "general.name": "tiny 中文 🦙",
        "llama.block_count": 1,
        "llama.rope.freq_base": 10000.0,
        "llama.attention.layer_norm_rms_epsilon": float(np.float32(1e-5)),  # float32 storage
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.tokens": ["<s>", "a", "b", " c"],
        "tokenizer.ggml.token_type": [3, 1, -1, 1],
        "tokenizer.ggml.scores": [0.0, -1.5, -2.25, -3.0],
        "big.count": 2**40,
    }
    return tensors, metadata


@pytest.mark.parametrize(
    ("dtype", "types"),
    [
        ("F32", {"token_embd.weight": "F32", "blk.0.attn_q.weight": "F32", "blk.0.odd.weight": "F32"}),
        ("F16", {"token_embd.weight": "F16", "blk.0.attn_q.weight": "F16", "blk.0.odd.weight": "F16"}),
        ("Q8_0", {"token_embd.weight": "Q8_0", "blk.0.attn_q.weight": "Q8_0", "blk.0.odd.weight": "F16"}),
    ],
)
def test_write_read_round_trip(tmp_path: Path, dtype: str, types: dict) -> None:
    tensors, metadata = _small_model()
    path = write_gguf(tmp_path / "m.gguf", "llama", metadata, tensors, dtype)
    f = read_gguf(path)
    assert f.metadata == {"general.architecture": "llama", **metadata}
    assert f.metadata_types["big.count"] == "UINT64" and f.metadata_types["tokenizer.ggml.token_type"] == "ARRAY[INT32]"
    assert f.tensor_types == {"blk.0.attn_norm.weight": "F32", **types}  # 1-D stays F32
    for name, t in tensors.items():
        got = f.tensors[name]
        assert got.shape == t.shape and got.dtype == torch.float32
        if types.get(name) == "Q8_0":  # error at most half a step (max|x|/127) plus the f16 rounding of the scale
            step = t.abs().reshape(t.shape[0], -1, 32).amax(-1, keepdim=True) / 127
            err = (got - t).abs().reshape(step.shape[0], -1, 32)
            assert (err <= step * (0.5 + 127 * 2**-11) + 1e-7).all(), name
            continue
        tol = 0.0 if types.get(name, "F32") == "F32" else 2e-3  # F16: relative error <= 2^-11
        torch.testing.assert_close(got, t, atol=tol * t.abs().max().item(), rtol=0)
    assert list(tmp_path.iterdir()) == [path]  # no temp files left


def test_round_trip_keeps_types_of_a_real_file(tmp_path: Path, smollm2_file) -> None:
    src = smollm2_file
    keep = [k for k in src.metadata if not k.startswith("tokenizer.ggml.")]  # the big vocab arrays are slow
    md = {k: src.metadata[k] for k in keep}
    path = write_gguf(
        tmp_path / "s.gguf",
        "llama",
        md,
        {"blk.0.attn_norm.weight": src.tensors["blk.0.attn_norm.weight"]},
        metadata_types=src.metadata_types,
    )
    f = read_gguf(path)
    assert f.metadata == md
    assert {k: f.metadata_types[k] for k in keep} == {k: src.metadata_types[k] for k in keep}
    assert torch.equal(f.tensors["blk.0.attn_norm.weight"], src.tensors["blk.0.attn_norm.weight"])


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    import gguf

    tensors, metadata = _small_model()
    path = write_gguf(tmp_path / "m.gguf", "llama", metadata, tensors)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="'bad'"):
        write_gguf(path, "llama", {"bad": {"a": 1}}, tensors)
    with pytest.raises(ValueError, match="Q8_0"):
        write_gguf(path, "llama", metadata, tensors, dtype="Q4_0")
    with pytest.raises(ValueError, match="'x'"):
        write_gguf(path, "llama", metadata, {"x": "not a tensor"})

    def disk_full(self, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", disk_full)  # fail half-way through the file
    with pytest.raises(OSError, match="disk full"):
        write_gguf(path, "llama", metadata, tensors)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


def test_corrupt_and_truncated_files(tmp_path: Path) -> None:
    tensors, metadata = _small_model()
    good = write_gguf(tmp_path / "m.gguf", "llama", metadata, tensors).read_bytes()
    with pytest.raises(FileNotFoundError):
        read_gguf(tmp_path / "missing.gguf")
    for cut in (3, 40, len(good) // 3, len(good) - 100):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(good[:cut])
        with pytest.raises(ValueError, match=f"cut{cut}.gguf"):
            read_gguf(bad)
    bad = tmp_path / "magic.gguf"
    bad.write_bytes(b"GGML" + good[4:])
    with pytest.raises(ValueError, match="magic.gguf"):
        read_gguf(bad)
