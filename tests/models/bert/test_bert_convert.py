"""`llmlab convert` routes BERT-family checkpoints through the registry: MiniLM HF -> llmlab -> HF, tokenizer kept."""

from __future__ import annotations

import torch
from cli_helpers import run_cli

from llmlab.models.bert import minilm_path


def test_convert_minilm_both_ways(tmp_path, capsys) -> None:
    from transformers import AutoTokenizer, BertModel

    code, out, err = run_cli(["convert", "--from", str(minilm_path()), "--to", str(tmp_path / "ours")], capsys)
    assert code == 0 and "converted bert model (22,713,216 parameters)" in out, err
    code, out, err = run_cli(
        ["convert", "--from", str(tmp_path / "ours"), "--to", str(tmp_path / "hf"), "--format", "hf"], capsys
    )
    assert code == 0, err
    texts = ["converted twice", "转换两次以后还一样"]
    batch = AutoTokenizer.from_pretrained(tmp_path / "hf")(texts, padding=True, return_tensors="pt")
    want_batch = AutoTokenizer.from_pretrained(minilm_path())(texts, padding=True, return_tensors="pt")
    assert torch.equal(batch["input_ids"], want_batch["input_ids"])
    with torch.no_grad():
        got = BertModel.from_pretrained(tmp_path / "hf").eval()(**batch).last_hidden_state
        want = BertModel.from_pretrained(minilm_path()).eval()(**batch).last_hidden_state
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(got[mask], want[mask], atol=0, rtol=0)
    code, _, err = run_cli(
        ["convert", "--from", str(tmp_path / "ours"), "--to", str(tmp_path / "m.gguf"), "--no-tokenizer"], capsys
    )
    assert code == 2 and "the bert family has no GGUF form" in err
