"""Structured pruning: removing heads/neurons whose output weights are zero leaves the outputs unchanged, the
config and the matrices shrink, and the smaller model saves, loads and converts to Hugging Face."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_models import tiny_gpt, tiny_llama

from llmlab.compress.prune import check_prune_args, plan_structured, prune_structured, stage_specs
from llmlab.models import load_model, save_hf


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(ids).logits


def _silence(model, heads: dict[int, list[int]], neurons: list[int]) -> None:
    """Zero the o_proj columns of `heads[layer]` and the down_proj columns of `neurons` in every layer."""
    with torch.no_grad():
        for i, layer in enumerate(model.layers):
            hs = layer.self_attn.head_dim
            for h in heads.get(i, []):
                layer.self_attn.o_proj.weight[:, h * hs : (h + 1) * hs] = 0
            layer.mlp.down_proj.weight[:, neurons] = 0


@pytest.mark.parametrize("importance", ["weight", "activation"])
def test_removing_silent_heads_per_group_and_neurons_is_exact(importance: str) -> None:
    from llmlab.compress.prune import collect_input_norms

    model = tiny_llama(0, num_key_value_heads=2, initializer_range=0.2)  # 4 query heads, 2 per KV head
    _silence(model, {0: [1, 2], 1: [0, 3]}, [3, 10, 41])
    ids = torch.randint(0, model.config.vocab_size, (2, 10))
    norms = collect_input_norms(model, [ids]) if importance == "activation" else None
    small, report = prune_structured(model, heads=2, neurons=3, importance=importance, input_norms=norms)
    assert report.removed_heads == [[1, 2], [0, 3]] and report.removed_neurons == [[3, 10, 41]] * 2
    assert torch.allclose(_logits(small, ids), _logits(model, ids), atol=1e-5)
    c = small.config
    assert (c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.intermediate_size) == (2, 2, 8, 61)
    attn = small.layers[0].self_attn
    assert attn.q_proj.weight.shape == (16, 32) and attn.o_proj.weight.shape == (32, 16)
    assert small.layers[0].mlp.down_proj.weight.shape == (32, 61)
    assert report.params_after < report.params_before


def test_removing_a_whole_group_drops_its_key_value_head(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = tiny_llama(1, num_key_value_heads=4, initializer_range=0.2, tie_word_embeddings=False)  # MHA
    _silence(model, {0: [1, 2], 1: [0, 3]}, [])
    ids = torch.randint(0, model.config.vocab_size, (1, 9))
    small, report = prune_structured(model, heads=2)  # 2 heads left: transformers wants hidden % heads == 0
    assert not report.plan.per_group and small.config.num_key_value_heads == 2
    assert report.removed_heads == [[1, 2], [0, 3]]
    assert small.layers[0].self_attn.k_proj.weight.shape == (16, 32)
    assert torch.allclose(_logits(small, ids), _logits(model, ids), atol=1e-5)
    small.save_pretrained(tmp_path / "llmlab")
    assert torch.allclose(_logits(load_model(tmp_path / "llmlab"), ids), _logits(model, ids), atol=1e-5)
    save_hf(small, tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        assert torch.allclose(hf(ids).logits, _logits(model, ids), atol=1e-4)


def test_gpt_neurons_are_removed_exactly_and_heads_are_refused() -> None:
    model = tiny_gpt(0)
    with torch.no_grad():
        for layer in model.layers:
            layer.mlp.c_proj.weight[:, [0, 7]] = 0
    ids = torch.randint(0, model.config.vocab_size, (1, 8))
    small, report = prune_structured(model, neurons=2)
    assert report.removed_neurons == [[0, 7]] * len(model.layers)
    assert small.config.mlp_hidden == model.config.hidden_size - 2
    assert torch.allclose(_logits(small, ids), _logits(model, ids), atol=1e-5)
    with pytest.raises(ValueError, match="needs a Llama-family model"):
        plan_structured(model, heads=1)


def test_plans_refuse_uneven_head_counts_and_stages_use_valid_multiples() -> None:
    model = tiny_llama(0, num_key_value_heads=2)
    with pytest.raises(ValueError, match=r"choose one of \[0, 2\]"):
        plan_structured(model, heads=1)
    with pytest.raises(ValueError, match="below the MLP size"):
        plan_structured(model, neurons=model.config.intermediate_size)
    stages = stage_specs(model, check_prune_args("structured", None, heads=2, neurons=9), 2)
    assert [(s.heads, s.neurons) for s in stages] == [(0, 4), (2, 5)]
