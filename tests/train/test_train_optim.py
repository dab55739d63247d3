"""Optimizers: decay-aware parameter groups, LAMB (hand-computed step + it trains), torch.optim by name."""

import math

import pytest
import tiny_models
import torch
from torch import nn

from llmlab.models.gpt import GPT
from llmlab.train.optim import Lamb, available_optimizers, build_optimizer, param_groups


def tiny_gpt(**kw) -> GPT:
    """`nano-char` at width 16, context 8 and vocabulary 17, in training mode."""
    return tiny_models.tiny_gpt(0, vocab_size=17, block_size=8, n_embd=16, **kw).train()


@pytest.mark.parametrize("tie", [True, False])
def test_param_groups_exclude_norms_biases_embeddings(tie: bool) -> None:
    model = tiny_gpt(tie_embeddings=tie)
    groups, report = param_groups(model, weight_decay=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)] for p in groups[0]["params"]}
    no_decay = {names[id(p)] for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert "transformer.wte.weight" in no_decay and "transformer.wpe.weight" in no_decay
    assert all(n.endswith(".bias") or "ln" in n or "norm" in n or "wte" in n or "wpe" in n for n in no_decay)
    assert all(n.endswith(".weight") and "wte" not in n and "wpe" not in n for n in decay)
    assert not any(n.endswith(".bias") for n in decay)
    assert any("ln" in n or "norm" in n for n in no_decay)  # norm gains really are in the no-decay group
    assert ("lm_head.weight" in decay) == (not tie)  # an untied output layer is a Linear: decayed
    # every parameter exactly once (the tied LM head is not double counted)
    assert report.decay_params + report.no_decay_params == model.num_parameters()
    assert report.decay_tensors == len(decay) and report.no_decay_tensors == len(no_decay)
    assert "weight decay on" in str(report)


def test_lamb_matches_hand_computed_step() -> None:
    p0, g = [1.0, -2.0], [0.5, 0.25]
    lr, b1, b2, eps, wd = 0.1, 0.9, 0.999, 1e-6, 0.01
    p = nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = Lamb([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    p.grad = torch.tensor(g, dtype=torch.float64)
    opt.step()
    # by hand: m = (1-b1) g, v = (1-b2) g^2; bias-corrected m_hat = g, v_hat = g^2
    u = [gi / (abs(gi) + eps) + wd * pi for gi, pi in zip(g, p0, strict=True)]
    trust = math.sqrt(sum(x * x for x in p0)) / math.sqrt(sum(x * x for x in u))
    expected = [pi - lr * trust * ui for pi, ui in zip(p0, u, strict=True)]
    torch.testing.assert_close(p.detach(), torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    # second step uses the running moments with bias correction 1 - b^2
    p.grad = torch.tensor(g, dtype=torch.float64)
    m = [(1 - b1) * gi * b1 + (1 - b1) * gi for gi in g]
    v = [((1 - b2) * gi * gi) * b2 + (1 - b2) * gi * gi for gi in g]
    p1 = expected
    u2 = [
        (mi / (1 - b1**2)) / (math.sqrt(vi / (1 - b2**2)) + eps) + wd * pi for mi, vi, pi in zip(m, v, p1, strict=True)
    ]
    trust2 = math.sqrt(sum(x * x for x in p1)) / math.sqrt(sum(x * x for x in u2))
    opt.step()
    expected2 = [pi - lr * trust2 * ui for pi, ui in zip(p1, u2, strict=True)]
    torch.testing.assert_close(p.detach(), torch.tensor(expected2, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_lamb_zero_weights_use_trust_one_and_clip() -> None:
    p = nn.Parameter(torch.zeros(3))
    opt = Lamb([p], lr=0.5, eps=0.0)
    p.grad = torch.ones(3)
    opt.step()  # ||x|| = 0 -> trust 1 -> x = -lr * 1
    torch.testing.assert_close(p.detach(), torch.full((3,), -0.5))
    q = nn.Parameter(torch.full((4,), 100.0))
    opt = Lamb([q], lr=0.1, eps=0.0, max_trust_ratio=2.0)
    q.grad = torch.ones(4)
    opt.step()  # ||x||/||u|| = 100 clipped to 2 -> moves by 0.2
    torch.testing.assert_close(q.detach(), torch.full((4,), 99.8))


def test_lamb_trains_a_tiny_lm() -> None:
    model = tiny_gpt()
    opt, _ = build_optimizer(model, "lamb", lr=0.1, weight_decay=0.01)
    assert isinstance(opt, Lamb)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 17, (8, 8), generator=g)
    y = (x + 1) % 17  # learnable: next token = token + 1
    losses = []
    for _ in range(30):
        loss = model(x, y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_torch_optimizers_by_name() -> None:
    model = tiny_gpt()
    sgd, _ = build_optimizer(model, "SGD", lr=0.1, weight_decay=0.1, extra={"momentum": 0.9})
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    assert [g["weight_decay"] for g in sgd.param_groups] == [0.1, 0.0]
    adamw, _ = build_optimizer(model, "adamw", lr=1e-3, weight_decay=0.1, betas=(0.9, 0.99), eps=1e-7)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["betas"] == (0.9, 0.99)
    assert adamw.defaults["eps"] == 1e-7
    rms, _ = build_optimizer(model, "rmsprop", lr=1e-3)
    assert isinstance(rms, torch.optim.RMSprop)
    assert {"AdamW", "LAMB", "SGD", "Adam", "RMSprop"} <= set(available_optimizers())


def test_optimizer_errors_list_the_choices() -> None:
    model = tiny_gpt()
    with pytest.raises(ValueError, match="unknown optimizer 'adamx'.*AdamW.*LAMB.*SGD"):
        build_optimizer(model, "adamx", lr=1e-3)
    with pytest.raises(ValueError, match="SGD has no argument 'betaz'"):
        build_optimizer(model, "sgd", lr=1e-3, extra={"betaz": 1})


def test_adamw_uses_the_fused_kernel_on_cpu_and_matches_foreach() -> None:
    """The fused AdamW step (chosen automatically for plain CPU parameters) equals the foreach one."""
    model_a, model_b = tiny_gpt(), tiny_gpt()
    fused, _ = build_optimizer(model_a, "adamw", lr=1e-2, weight_decay=0.1)
    assert fused.defaults["fused"] is True
    groups, _ = param_groups(model_b, weight_decay=0.1)
    reference = torch.optim.AdamW(groups, lr=1e-2, betas=(0.9, 0.95), foreach=True)
    x = torch.randint(0, 17, (4, 8))
    for _ in range(3):
        for model, opt in ((model_a, fused), (model_b, reference)):
            opt.zero_grad()
            model(x, x).loss.backward()
            opt.step()
    for (name, a), b in zip(model_a.named_parameters(), model_b.parameters(), strict=True):
        # the kernels round differently; 1e-4 is 1% of one lr=1e-2 step
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=lambda m, name=name: f"{name}: {m}")
