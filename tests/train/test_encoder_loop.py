"""EncoderObjectiveTrainer's pieces: the example stream (epochs, exact state), accuracies, the heads file."""

from __future__ import annotations

import torch

from llmlab.train.encoder_loop import ExampleStream, accuracies, objective_head_state, right_pad


def test_stream_visits_every_example_once_per_epoch_and_resumes_exactly() -> None:
    stream = ExampleStream(10, 4, seed=3)
    first = [stream.next_indices() for _ in range(3)]  # 4 + 4 + 2 (a batch never spans two epochs)
    assert [e for e, _ in first] == [0, 0, 0] and sorted(i for _, idx in first for i in idx) == list(range(10))
    assert [len(idx) for _, idx in first] == [4, 4, 2]
    state = stream.state_dict()
    following = [stream.next_indices() for _ in range(3)]
    assert following[0][0] == 1 and following[0][1] != first[0][1]  # a new permutation in epoch 1
    resumed = ExampleStream(10, 4, seed=3)
    resumed.load_state_dict(state)
    assert [resumed.next_indices() for _ in range(3)] == following


def test_accuracies_and_padding() -> None:
    assert accuracies({"mlm_correct": 3, "mlm_total": 4, "sentence_correct": 0, "sentence_total": 0}) == {
        "mlm_accuracy": 0.75
    }
    assert right_pad([[1, 2, 3], [4]], 0).tolist() == [[1, 2, 3], [4, 0, 0]]


def test_head_state_skips_the_encoder_and_shared_tensors() -> None:
    encoder = torch.nn.Linear(2, 2)
    module = torch.nn.ModuleDict({"encoder": encoder, "head": torch.nn.Linear(2, 1)})
    module["tied"] = torch.nn.Linear(2, 2)
    module["tied"].weight = encoder.weight  # shared with the encoder: saved with the encoder only
    assert sorted(objective_head_state(module, encoder)) == ["head.bias", "head.weight", "tied.bias"]
