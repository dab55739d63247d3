"""`llmlab average`: uniform and weighted soups of tiny checkpoints, format kept, one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from tiny_models import tiny_gpt, tiny_llama

from llmlab.hub import load_for_inference
from llmlab.io import is_llmlab_output
from llmlab.models import save_hf, save_llmlab
from llmlab.recipes.average import parse_weights
from llmlab.tokenizers import train_tokenizer_from_iterator

SPECIALS = {"pad": "<|pad|>", "unk": "<|unk|>", "bos": "<|bos|>", "eos": "<|endoftext|>"}


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer_from_iterator("bpe", ["the quick brown fox jumps over the dog\n" * 30], 280, SPECIALS)


def _save(model, directory: Path, tokenizer, fmt: str = "llmlab") -> Path:
    (save_llmlab if fmt == "llmlab" else save_hf)(model, directory)
    if tokenizer is not None:
        tokenizer.save(directory)
    return directory


def _params(path: Path) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in load_for_inference(path, require_tokenizer=False).model.state_dict().items()}


def test_uniform_and_weighted_soups(tmp_path: Path, tokenizer, capsys) -> None:
    a = _save(tiny_gpt(0, vocab_size=tokenizer.vocab_size), tmp_path / "a", tokenizer)
    b = _save(tiny_gpt(1, vocab_size=tokenizer.vocab_size), tmp_path / "b", tokenizer)
    code, out, err = run_cli(["average", str(a), str(b), "--out", str(tmp_path / "soup")], capsys)
    assert code == 0, err
    assert "averaged 2 gpt checkpoints" in out and "wrote" in out and "(llmlab, f32)" in out
    pa, pb, soup = _params(a), _params(b), _params(tmp_path / "soup")
    assert not torch.equal(pa["transformer.wte.weight"], pb["transformer.wte.weight"])
    for k in pa:
        torch.testing.assert_close(soup[k], (pa[k] + pb[k]) / 2, rtol=0, atol=1e-6, msg=k)
    assert is_llmlab_output(tmp_path / "soup") and (tmp_path / "soup" / "tokenizer.json").is_file()
    assert load_for_inference(tmp_path / "soup").tokenizer is not None  # loadable by every verb
    code, out, err = run_cli(["average", str(a), str(b), "--out", str(tmp_path / "w"), "--weights", "3,1"], capsys)
    assert code == 0, err
    weighted = _params(tmp_path / "w")
    for k in pa:
        torch.testing.assert_close(weighted[k], 0.75 * pa[k] + 0.25 * pb[k], rtol=0, atol=1e-6, msg=k)


def test_hugging_face_inputs_give_a_hugging_face_soup(tmp_path: Path, tokenizer, capsys) -> None:
    llamas = [tiny_llama(s, vocab_size=tokenizer.vocab_size) for s in (0, 1)]
    a, b = (_save(m, tmp_path / f"hf{i}", tokenizer, "hf") for i, m in enumerate(llamas))
    code, out, err = run_cli(["average", str(a), str(b), "--out", str(tmp_path / "soup")], capsys)
    assert code == 0 and "(hf, f32)" in out, err
    assert (tmp_path / "soup" / "config.json").is_file()
    pa, pb, soup = _params(a), _params(b), _params(tmp_path / "soup")
    assert all(torch.allclose(soup[k], (pa[k] + pb[k]) / 2, atol=1e-6) for k in pa)


def test_refusals_are_one_line_and_write_nothing(tmp_path: Path, tokenizer, capsys) -> None:
    v = tokenizer.vocab_size
    a = _save(tiny_gpt(0, vocab_size=v), tmp_path / "a", tokenizer)
    deeper = _save(tiny_gpt(0, vocab_size=v, n_layer=3), tmp_path / "deeper", tokenizer)
    other_tok = train_tokenizer_from_iterator("bpe", ["completely different text here\n" * 30], v, SPECIALS)
    retok = _save(tiny_gpt(1, vocab_size=v), tmp_path / "retok", other_tok)
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    out = str(tmp_path / "soup")
    cases = [
        (["average", str(a), "--out", out], "give at least two checkpoints"),
        (["average", str(a), str(deeper), "--out", out], f"{deeper} has another architecture than {a}"),
        (["average", str(a), str(retok), "--out", out], f"{retok} has another tokenizer than {a}"),
        (["average", str(a), str(a), "--out", out, "--weights", "1"], "--weights has 1 values for 2 checkpoints"),
        (["average", str(a), str(a), "--out", out, "--weights", "1,x"], "--weights must be comma-separated"),
        (["average", str(a), str(tmp_path / "nope"), "--out", out], "nope"),
        (["average", str(a), str(a), "--out", str(foreign), "--overwrite"], "--out"),
        (["average", str(a), str(a), "--out", str(a), "--overwrite"], "--out"),
    ]
    for args, message in cases:
        code, _, err = run_cli(args, capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
        assert not Path(out).exists()
    assert (foreign / "notes.txt").read_text() == "mine" and (a / "model.safetensors").is_file()


def test_parse_weights() -> None:
    assert parse_weights(None, 4) == [0.25] * 4
    assert parse_weights("1,1,2", 3) == [0.25, 0.25, 0.5]
    with pytest.raises(ValueError, match="finite, >= 0 and not all 0"):
        parse_weights("0,0", 2)
    with pytest.raises(ValueError, match="finite"):
        parse_weights("1,-1", 2)
