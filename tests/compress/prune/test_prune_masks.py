"""Unstructured pruning: persistent masks, layer-wise vs global thresholds, N:M patterns, Wanda scores."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_models import tiny_llama
from torch import nn

from llmlab.compress.prune import (
    check_prune_args,
    collect_input_norms,
    magnitude_prune,
    make_permanent,
    nm_mask,
    overall_sparsity,
    prune_model,
    sparsity_report,
    stage_specs,
    target_linears,
    wanda_prune,
    wanda_scores,
)


class OneLinear(nn.Module):
    """The smallest model `target_linears` accepts: `layers` holding one Linear, applied to the input."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(weight.shape[1], weight.shape[0], bias=False)])
        with torch.no_grad():
            self.layers[0].weight.copy_(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[0](x)


def test_masks_persist_through_optimizer_steps_and_make_permanent() -> None:
    model = tiny_llama(0)
    magnitude_prune(model, 0.5)
    masks = {name: lin.weight_mask.clone() for name, lin in target_linears(model).items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    ids = torch.randint(0, model.config.vocab_size, (2, 12))
    for _ in range(3):
        opt.zero_grad()
        logits = model(ids).logits  # (B, T, V)
        F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
        opt.step()
    model(ids)  # the pre-hook recomputes weight = weight_orig * weight_mask
    for name, lin in target_linears(model).items():
        assert bool((lin.weight[masks[name] == 0] == 0).all()), name
        assert bool((lin.weight[masks[name] == 1] != 0).all()), name
    assert make_permanent(model) == len(masks)
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.endswith("_orig") for n in names) and not any(
        n.endswith("_mask") for n, _ in model.named_buffers()
    )
    for name, lin in target_linears(model).items():
        assert bool((lin.weight[masks[name] == 0] == 0).all()) and isinstance(lin.weight, nn.Parameter)
    assert overall_sparsity(sparsity_report(model)) == pytest.approx(0.5, abs=1e-3)


def test_layerwise_prunes_every_linear_to_the_target_global_uses_one_threshold() -> None:
    layerwise = tiny_llama(1)
    with torch.no_grad():  # one Linear with much larger weights: global pruning spares it
        target_linears(layerwise)["model.layers.0.mlp.down_proj"].weight.mul_(10)
    glob = tiny_llama(1)
    glob.load_state_dict(layerwise.state_dict())
    magnitude_prune(layerwise, 0.6)
    for row in sparsity_report(layerwise):
        assert row.sparsity == pytest.approx(0.6, abs=1 / row.total + 1e-9), row.name
    magnitude_prune(glob, 0.6, scope="global")
    rows = {r.name: r.sparsity for r in sparsity_report(glob)}
    assert overall_sparsity(sparsity_report(glob)) == pytest.approx(0.6, abs=1e-4)
    assert rows["model.layers.0.mlp.down_proj"] < 0.2 < 0.6 < min(v for k, v in rows.items() if "down_proj" not in k)
    kept, removed = [], []
    for lin in target_linears(glob).values():
        w, m = lin.weight_orig.detach().abs(), lin.weight_mask.bool()
        kept.append(w[m].min())
        removed.append(w[~m].max())
    assert max(removed) <= min(kept)  # one threshold over all Linears


def test_iterative_pruning_keeps_earlier_zeros_and_stage_specs_split_the_target() -> None:
    model = tiny_llama(2)
    spec = check_prune_args("magnitude", 0.6)
    stages = stage_specs(model, spec, 3)
    assert [s.sparsity for s in stages] == pytest.approx([0.2, 0.4, 0.6])
    masks = []
    for stage in stages:
        model, _ = prune_model(model, stage)
        masks.append({n: lin.weight_mask.clone() for n, lin in target_linears(model).items()})
    for name in masks[0]:
        assert bool((masks[2][name] <= masks[1][name]).all() and (masks[1][name] <= masks[0][name]).all())
    assert overall_sparsity(sparsity_report(model)) == pytest.approx(0.6, abs=1e-3)


def test_nm_mask_on_hand_cases() -> None:
    scores = torch.tensor([[1.0, 4.0, 2.0, 3.0, 0.1, 0.2, 0.3, 0.4], [-0.0, 9.0, 9.0, 1.0, 5.0, 1.0, 1.0, 5.0]])
    expected = torch.tensor([[0, 1, 0, 1, 0, 0, 1, 1], [0, 1, 1, 0, 1, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(nm_mask(scores, 2, 4), expected)
    assert torch.equal(
        nm_mask(torch.tensor([[3.0, 1.0, 2.0, 5.0, 4.0, 6.0]]), 1, 3), torch.tensor([[1, 0, 0, 0, 0, 1]]).bool()
    )
    with pytest.raises(ValueError, match="divisible by 4"):
        nm_mask(torch.ones(2, 6))


def test_two_four_on_a_model_keeps_exactly_two_of_every_four_inputs() -> None:
    model, _ = prune_model(tiny_llama(3), check_prune_args("2:4", None))
    for name, lin in target_linears(model).items():
        nonzero = (lin.weight != 0).reshape(lin.out_features, -1, 4).sum(-1)
        assert bool((nonzero == 2).all()), name


def test_wanda_scores_and_masks_on_a_hand_case() -> None:
    weight = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    model = OneLinear(weight)
    x = torch.tensor([[[3.0, 0.0], [4.0, 1.0]]])  # (1, 2 tokens, 2 features): ||X_0|| = 5, ||X_1|| = 1
    norms = collect_input_norms(model, [x])
    assert torch.allclose(norms["layers.0"], torch.tensor([5.0, 1.0]))
    assert torch.allclose(wanda_scores(weight, norms["layers.0"]), torch.tensor([[5.0, 2.0], [15.0, 0.5]]))
    wanda_prune(model, 0.5, norms)
    assert torch.equal(model.layers[0].weight, torch.tensor([[1.0, 0.0], [3.0, 0.0]]))
    magnitude = OneLinear(weight)
    magnitude_prune(magnitude, 0.5)  # |w| alone removes other weights: 1.0 and 0.5
    assert torch.equal(magnitude.layers[0].weight, torch.tensor([[0.0, -2.0], [3.0, 0.0]]))


def test_wanda_prunes_every_output_row_to_the_sparsity() -> None:
    model = tiny_llama(4)
    norms = collect_input_norms(model, [torch.randint(0, model.config.vocab_size, (1, 16))])
    wanda_prune(model, 0.25, norms)
    for name, lin in target_linears(model).items():
        per_row = (lin.weight == 0).sum(1)
        assert bool((per_row == round(0.25 * lin.in_features)).all()), name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("pruneit", 0.5), "unknown --method 'pruneit'"),
        (("magnitude", 1.0), "--sparsity 1.0 must be a fraction in"),
        (("wanda", None), "needs --sparsity"),
        (("4:2", None), "0 < N < M"),
        (("1:4", 0.5), "fixes the sparsity at 0.75"),
        (("magnitude", 0.5, 2), "--heads 2: only for --method structured"),
        (("structured", 0.5, 3), "either --sparsity or --heads/--neurons"),
    ],
)
def test_check_prune_args_refuses_bad_requests(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        check_prune_args(*args)
