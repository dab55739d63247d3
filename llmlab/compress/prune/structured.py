"""Structured pruning that removes attention heads and MLP neurons: smaller matrices, a real speed-up.

The same NUMBER of heads and of neurons is removed from every layer, so the result is again a standard llmlab
model with a smaller config (`num_attention_heads` / `num_key_value_heads` / `intermediate_size` for Llama,
`mlp_hidden` for GPT) that saves with `save_pretrained`, loads everywhere and converts to Hugging Face; which
heads/neurons go is chosen per layer by importance (Michel et al. 2019, "Are Sixteen Heads Really Better than
One?", https://arxiv.org/abs/1905.10650; LLM-Pruner, Ma et al. 2023, https://arxiv.org/abs/2305.11627):

- `weight`: head h: ||W_q[h]||_F * ||W_o[:, h]||_F; neuron i: ||W_up[i]||_2 * ||W_down[:, i]||_2 (c_fc/c_proj
  for GPT-2's MLP): what a unit reads times what it can write to the residual stream.
- `activation` (Wanda-like aggregate, https://arxiv.org/abs/2306.11695): head h: sum over its o_proj input
  columns j of ||X_j||_2 * ||W_o[:, j]||_2; neuron i: ||X_i||_2 * ||W_down[:, i]||_2, X the input of the
  output projection over the calibration tokens (`wanda.collect_input_norms`).

Grouped-query attention (query head h reads key/value head h // group): `heads` query heads are removed as
`heads / num_key_value_heads` query heads from EVERY group (the key/value heads stay) when that leaves each
group a head; otherwise as `heads / group` whole groups (a key/value head and its query heads). A head or neuron
whose output weights are zero contributes nothing, so removing it leaves the model's outputs unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from llmlab.compress.prune.masks import make_permanent
from llmlab.nn.attention import Attention
from llmlab.nn.mlp import GELUMLP, SwiGLUMLP

IMPORTANCE = ("weight", "activation")


@dataclass
class StructuredPlan:
    """How many heads / key-value heads / neurons each layer has before and after."""

    heads: tuple[int, int]
    kv_heads: tuple[int, int]
    neurons: tuple[int, int]
    per_group: bool  # True: query heads removed inside each KV group; False: whole groups removed


@dataclass
class StructuredReport:
    """What `prune_structured` removed: the plan, parameter counts and the removed indices of each layer."""

    plan: StructuredPlan
    params_before: int
    params_after: int
    removed_heads: list[list[int]]
    removed_neurons: list[list[int]]


def _attention_and_mlp(layer: nn.Module) -> tuple[Attention, nn.Module]:
    attn = getattr(layer, "self_attn", None) or getattr(layer, "attn", None)
    mlp = getattr(layer, "mlp", None)
    if not isinstance(attn, Attention) or not isinstance(mlp, (SwiGLUMLP, GELUMLP)):
        raise ValueError(f"structured pruning needs Attention + dense MLP layers, got {type(layer).__name__} (MoE?)")
    return attn, mlp


def _mlp_in_out(mlp: nn.Module) -> tuple[list[nn.Linear], nn.Linear]:
    """The Linears whose ROWS are the neurons, and the output Linear whose COLUMNS are."""
    if isinstance(mlp, SwiGLUMLP):
        return [mlp.gate_proj, mlp.up_proj], mlp.down_proj
    return [mlp.c_fc], mlp.c_proj


def plan_structured(model: nn.Module, heads: int = 0, neurons: int = 0) -> StructuredPlan:
    """Check that `heads` query heads and `neurons` MLP neurons can go from every layer (ValueError: one line)."""
    attn, mlp = _attention_and_mlp(model.layers[0])
    n_head, n_kv = attn.n_head, attn.n_kv_head
    hidden = _mlp_in_out(mlp)[1].in_features
    if heads < 0 or neurons < 0:
        raise ValueError(f"--heads and --neurons must be >= 0, got {heads} and {neurons}")
    if not 0 <= neurons < hidden:
        raise ValueError(f"--neurons {neurons} must be below the MLP size {hidden} (at least one neuron stays)")
    if heads and getattr(model, "family_name", "") != "llama":
        raise ValueError("removing heads needs a Llama-family model (GPT's head size is n_embd/n_head); use --neurons")
    if heads and attn.fused_qkv:
        raise ValueError("removing heads needs separate q/k/v projections; use --neurons")
    group = n_head // n_kv
    if heads == 0:
        return StructuredPlan((n_head, n_head), (n_kv, n_kv), (hidden, hidden - neurons), True)
    if heads % n_kv == 0 and heads // n_kv < group:
        return StructuredPlan((n_head, n_head - heads), (n_kv, n_kv), (hidden, hidden - neurons), True)
    if heads % group == 0 and heads // group < n_kv:
        return StructuredPlan(
            (n_head, n_head - heads), (n_kv, n_kv - heads // group), (hidden, hidden - neurons), False
        )
    valid = valid_head_counts(model)
    raise ValueError(
        f"--heads {heads} cannot be removed evenly from {n_head} query heads in {n_kv} key/value groups; "
        f"choose one of {valid}"
    )


def valid_head_counts(model: nn.Module) -> list[int]:
    """The numbers of query heads that can be removed from every layer: k per KV group, or k whole groups."""
    attn, _ = _attention_and_mlp(model.layers[0])
    n_kv, group = attn.n_kv_head, attn.n_head // attn.n_kv_head
    return sorted({k * n_kv for k in range(group)} | {k * group for k in range(n_kv)})


def counts_for_sparsity(model: nn.Module, sparsity: float) -> tuple[int, int]:
    """(heads, neurons) removing about `sparsity` of each layer's heads and MLP neurons (heads: nearest valid)."""
    attn, mlp = _attention_and_mlp(model.layers[0])
    hidden = _mlp_in_out(mlp)[1].in_features
    neurons = min(round(sparsity * hidden), hidden - 1)
    if getattr(model, "family_name", "") != "llama" or attn.fused_qkv:
        return 0, neurons
    valid = valid_head_counts(model)
    return min(valid, key=lambda h: abs(h - sparsity * attn.n_head)), neurons


def _head_scores(attn: Attention, norms: torch.Tensor | None) -> torch.Tensor:
    """(n_head,) importance of each query head (see the module docstring)."""
    hs = attn.head_dim
    wo = attn.o_proj.weight.detach().float()  # (C, nh * hs)
    if norms is not None:
        return (norms.float().to(wo.device) * wo.norm(dim=0)).view(attn.n_head, hs).sum(1)
    wq = attn.q_proj.weight.detach().float().view(attn.n_head, hs, -1)  # (nh, hs, C)
    return wq.flatten(1).norm(dim=1) * wo.view(wo.shape[0], attn.n_head, hs).transpose(0, 1).reshape(
        attn.n_head, -1
    ).norm(dim=1)


def _neuron_scores(mlp: nn.Module, norms: torch.Tensor | None) -> torch.Tensor:
    """(hidden,) importance of each MLP neuron (see the module docstring)."""
    ins, out = _mlp_in_out(mlp)
    down = out.weight.detach().float().norm(dim=0)  # (hidden,)
    if norms is not None:
        return norms.float().to(down.device) * down
    return ins[-1].weight.detach().float().norm(dim=1) * down


def _removed_heads(scores: torch.Tensor, plan: StructuredPlan) -> list[int]:
    """Indices of the query heads to remove from one layer, per the plan (lowest importance first)."""
    n_head, n_kv = plan.heads[0], plan.kv_heads[0]
    group = n_head // n_kv
    by_group = scores.view(n_kv, group)  # query head h = g * group + r reads key/value head g
    if plan.per_group:
        per = (plan.heads[0] - plan.heads[1]) // n_kv
        drop = torch.topk(by_group, per, dim=1, largest=False).indices if per else by_group[:, :0].long()
        return sorted(int(g * group + r) for g in range(n_kv) for r in drop[g])
    groups = torch.topk(by_group.sum(1), plan.kv_heads[0] - plan.kv_heads[1], largest=False).indices
    return sorted(int(g) * group + r for g in groups for r in range(group))


def _keep(n: int, removed: list[int]) -> torch.Tensor:
    gone = set(removed)
    return torch.tensor([i for i in range(n) if i not in gone], dtype=torch.long)


def _units(index: torch.Tensor, size: int) -> torch.Tensor:
    """Row indices of units `index`, each `size` rows wide: (len(index) * size,)."""
    return (index[:, None] * size + torch.arange(size)[None, :]).flatten()


def prune_structured(
    model: nn.Module,
    heads: int = 0,
    neurons: int = 0,
    importance: str = "weight",
    input_norms: dict[str, torch.Tensor] | None = None,
) -> tuple[nn.Module, StructuredReport]:
    """Remove `heads` query heads and `neurons` MLP neurons from every layer; return a NEW, smaller model.

    Args:
        model: an llmlab Llama (heads and neurons) or GPT (neurons). Pruning masks are folded in first.
        heads / neurons: how many to remove from each layer (see `plan_structured` for GQA).
        importance: "weight" or "activation" (needs `input_norms` from `wanda.collect_input_norms`).
        input_norms: name -> (K,) input norms of the targeted Linears (for "activation").
    """
    if importance not in IMPORTANCE:
        raise ValueError(f"unknown importance {importance!r}; choose one of: {', '.join(IMPORTANCE)}")
    if importance == "activation" and input_norms is None:
        raise ValueError("activation importance needs calibration input norms; pass --calibration")
    make_permanent(model)
    plan = plan_structured(model, heads, neurons)
    names = {id(m): n for n, m in model.named_modules()}
    state = dict(model.state_dict())
    removed_heads, removed_neurons = [], []

    def slice_linear(linear: nn.Linear, index: torch.Tensor, dim: int) -> None:
        prefix = names[id(linear)]
        state[f"{prefix}.weight"] = state[f"{prefix}.weight"].index_select(dim, index.to(linear.weight.device))
        if linear.bias is not None and dim == 0:
            state[f"{prefix}.bias"] = state[f"{prefix}.bias"].index_select(0, index.to(linear.bias.device))

    for layer in model.layers:
        attn, mlp = _attention_and_mlp(layer)
        norm_of = (lambda lin: input_norms[names[id(lin)]]) if importance == "activation" else (lambda lin: None)
        gone = _removed_heads(_head_scores(attn, norm_of(attn.o_proj)), plan) if heads else []
        removed_heads.append(gone)
        if gone:
            q_rows = _units(_keep(attn.n_head, gone), attn.head_dim)
            slice_linear(attn.q_proj, q_rows, 0)
            slice_linear(attn.o_proj, q_rows, 1)
            if not plan.per_group:
                group = attn.n_head // attn.n_kv_head
                kv_gone = sorted({h // group for h in gone})
                kv_rows = _units(_keep(attn.n_kv_head, kv_gone), attn.head_dim)
                slice_linear(attn.k_proj, kv_rows, 0)
                slice_linear(attn.v_proj, kv_rows, 0)
        ins, out = _mlp_in_out(mlp)
        drop = torch.topk(_neuron_scores(mlp, norm_of(out)), neurons, largest=False).indices.tolist() if neurons else []
        removed_neurons.append(sorted(drop))
        if drop:
            keep = _keep(out.in_features, drop)
            for linear in ins:
                slice_linear(linear, keep, 0)
            slice_linear(out, keep, 1)
    smaller = type(model)(_smaller_config(model.config, plan))
    param = next(model.parameters())
    smaller.to(device=param.device, dtype=param.dtype)
    smaller.load_state_dict(state)
    smaller.train(model.training)
    report = StructuredReport(plan, _count(model), _count(smaller), removed_heads, removed_neurons)
    return smaller, report


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _smaller_config(config: object, plan: StructuredPlan) -> object:
    """The config of the pruned model (head size stated explicitly: it no longer follows from the width)."""
    if hasattr(config, "intermediate_size"):  # Llama
        return dataclasses.replace(
            config,
            num_attention_heads=plan.heads[1],
            num_key_value_heads=plan.kv_heads[1],
            head_dim=config.resolved_head_dim,
            intermediate_size=plan.neurons[1],
        )
    return dataclasses.replace(config, mlp_hidden=plan.neurons[1])
