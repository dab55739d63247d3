"""SimCSE and SupCon (L_out) losses and ELECTRA replacements on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from llmlab.models.pretraining_heads import electra_replace
from llmlab.train.contrastive import simcse_loss, supcon_loss


def test_simcse_identical_orthogonal_views() -> None:
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # sim = [[2, 0], [0, 2]] at t = 0.5 (cosine: the scale of a view does not matter): -log(e^2 / (e^2 + 1))
    assert simcse_loss(z, z * 3.0, 0.5).item() == pytest.approx(math.log1p(math.exp(-2.0)), rel=1e-5)
    assert simcse_loss(z, z, 0.05).item() < 1e-6  # the paper's temperature: near-zero loss


def test_simcse_in_batch_negatives() -> None:
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    a = 1 / math.sqrt(2)  # row 0: cos 1/sqrt2 to both -> log 2; row 1: cos +a to z2[0], -a to its positive z2[1]
    expected = (math.log(2) + math.log1p(math.exp(2 * a))) / 2
    assert simcse_loss(z1, z2, 1.0).item() == pytest.approx(expected, rel=1e-5)


def test_supcon_one_positive_each() -> None:
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])  # normalised: z0 = z2
    labels = torch.tensor([0, 0, 1])
    # anchor 0: P={1}, A={1,2}: -log(e^0 / (e^0 + e^1)); anchor 1: P={0}, A={0,2}: log 2; anchor 2: no positive
    expected = (math.log(1 + math.e) + math.log(2)) / 2
    assert supcon_loss(z, labels, 1.0).item() == pytest.approx(expected, rel=1e-5)


def test_supcon_denominator_keeps_the_other_positives() -> None:
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 0, 0])
    # anchor 0: P = A = {1, 2}: -(1/2) [log(e^0/(1+e)) + log(e^1/(1+e))] = log(1+e) - 1/2; anchor 2 the same;
    # anchor 1: dots 0 and 0 -> log 2
    expected = (2 * (math.log(1 + math.e) - 0.5) + math.log(2)) / 3
    assert supcon_loss(z, labels, 1.0).item() == pytest.approx(expected, rel=1e-5)


def test_supcon_without_positives_is_an_error() -> None:
    with pytest.raises(ValueError, match="shares its label"):
        supcon_loss(torch.eye(3), torch.tensor([0, 1, 2]))


def test_electra_replacements_and_labels() -> None:
    original = torch.tensor([[5, 6, 7, 8]])
    labels = torch.tensor([[-100, 6, -100, 8]])  # positions 1 and 3 were masked
    logits = torch.full((2, 12), -1e4)  # (M=2, V) at the masked positions, row-major
    logits[0, 9] = 0.0  # the generator samples 9 at position 1 (a replacement)
    logits[1, 8] = 0.0  # and the original 8 at position 3: counts as original
    disc_inputs, replaced = electra_replace(original, labels, logits, torch.Generator().manual_seed(0))
    assert disc_inputs.tolist() == [[5, 9, 7, 8]]
    assert replaced.tolist() == [[0, 1, 0, 0]]
