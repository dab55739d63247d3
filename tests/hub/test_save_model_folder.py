"""`llmlab.hub.save_model_folder`: the one writer of a run's final `model/` (checkpoint + tokenizer), atomic."""

from __future__ import annotations

import torch
from tiny_models import tiny_gpt

from llmlab.hub import load_for_inference, save_model_folder
from llmlab.tokenizers.train import train_tokenizer_from_iterator


def test_writes_a_loadable_folder_and_replaces_an_earlier_one_whole(tmp_path) -> None:
    tokenizer = train_tokenizer_from_iterator("char", ["abcdefghij klmnop"], 0)
    first = tiny_gpt(seed=0, vocab_size=tokenizer.vocab_size)
    second = tiny_gpt(seed=1, vocab_size=tokenizer.vocab_size)
    assert not torch.equal(first.lm_head.weight, second.lm_head.weight)
    dst = tmp_path / "run" / "model"
    dst.parent.mkdir()
    save_model_folder(first, tokenizer, dst)
    (dst / "stale.txt").write_text("from the earlier folder")
    assert save_model_folder(second, tokenizer, dst) == dst
    loaded = load_for_inference(dst)
    assert not (dst / "stale.txt").exists()  # the folder was swapped, not written over file by file
    for name, tensor in second.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor)
    assert loaded.tokenizer.encode("abc") == tokenizer.encode("abc")
    assert sorted(p.name for p in dst.parent.iterdir()) == ["model"]  # no temporary folder left beside it
