"""Token shards and loaders: dtype choice, packing round trip, random windows, resume, rank slicing, val order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from llmlab.data import RandomWindowLoader, SequentialLoader, TokenDataset, choose_dtype, read_shard, write_shard


def test_choose_dtype() -> None:
    assert choose_dtype(65, "auto") == np.uint16
    assert choose_dtype(65536, "auto") == np.uint16
    assert choose_dtype(65537, "auto") == np.uint32
    assert choose_dtype(100_000, "uint32") == np.uint32
    with pytest.raises(ValueError, match="does not fit in uint16"):
        choose_dtype(65537, "uint16")


@pytest.mark.parametrize(("vocab", "dtype"), [(50_000, np.uint16), (200_000, np.uint32)])
def test_shard_round_trip(tmp_path: Path, vocab: int, dtype: type) -> None:
    ids = np.random.default_rng(0).integers(0, vocab, size=10_001)
    ids[:2] = [0, vocab - 1]
    path = tmp_path / "x.bin"
    assert write_shard(path, ids, choose_dtype(vocab), vocab) == len(ids)
    assert path.stat().st_size == len(ids) * np.dtype(dtype).itemsize
    back = read_shard(path, dtype)
    assert back.dtype == dtype and np.array_equal(back, ids)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        write_shard(tmp_path / "y.bin", [vocab], choose_dtype(vocab), vocab)


def _make_dataset(root: Path, n_train: int = 1000, n_val: int = 203) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_shard(root / "train.bin", np.arange(n_train) % 500, np.dtype(np.uint16), 500)
    write_shard(root / "val.bin", np.arange(n_val) % 500, np.dtype(np.uint16), 500)
    (root / "meta.json").write_text(json.dumps({"dtype": "uint16", "vocab_size": 500}))
    return root


def test_random_windows_are_shifted_and_seeded(tmp_path: Path) -> None:
    ds = TokenDataset(_make_dataset(tmp_path / "d"), "train")
    assert len(ds) == 1000 and ds.vocab_size == 500
    a = RandomWindowLoader(ds, batch_size=4, block_size=16, seed=7)
    x, y = a.next_batch()
    assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(y, (x + 1) % 500)  # the data is 0, 1, 2, ... so the target is the next id
    b = RandomWindowLoader(ds, batch_size=4, block_size=16, seed=7)
    c = RandomWindowLoader(ds, batch_size=4, block_size=16, seed=8)
    assert torch.equal(b.next_batch()[0], x)
    assert not torch.equal(c.next_batch()[0], x)


def test_state_dict_resume_gives_identical_batches(tmp_path: Path) -> None:
    ds = TokenDataset(_make_dataset(tmp_path / "d"), "train")
    ref = RandomWindowLoader(ds, batch_size=3, block_size=8, seed=1)
    for _ in range(5):
        ref.next_batch()
    state = ref.state_dict()
    expected = [ref.next_batch() for _ in range(4)]
    resumed = RandomWindowLoader(ds, batch_size=3, block_size=8, seed=999)
    resumed.load_state_dict(torch.load(_save(tmp_path, state), weights_only=True))  # survives torch.save
    assert resumed.step == 5
    for ex, ey in expected:
        x, y = resumed.next_batch()
        assert torch.equal(x, ex) and torch.equal(y, ey)


def _save(tmp_path: Path, state: dict) -> Path:
    path = tmp_path / "state.pt"
    torch.save(state, path)
    return path


def test_rank_slices_match_the_global_batch(tmp_path: Path) -> None:
    ds = TokenDataset(_make_dataset(tmp_path / "d"), "train")
    world, B = 3, 2
    single = RandomWindowLoader(ds, batch_size=world * B, block_size=8, seed=3)
    ranks = [RandomWindowLoader(ds, batch_size=B, block_size=8, seed=3, rank=r, world_size=world) for r in range(world)]
    for _ in range(3):
        gx, gy = single.next_batch()
        parts = [loader.next_batch() for loader in ranks]
        assert torch.equal(torch.cat([p[0] for p in parts]), gx)
        assert torch.equal(torch.cat([p[1] for p in parts]), gy)
    with pytest.raises(ValueError, match="rank"):
        RandomWindowLoader(ds, batch_size=B, block_size=8, seed=3, rank=3, world_size=3)


def test_sequential_loader_covers_val_in_order(tmp_path: Path) -> None:
    ds = TokenDataset(_make_dataset(tmp_path / "d", n_val=203), "val")
    loader = SequentialLoader(ds, batch_size=3, block_size=10)
    batches = list(loader)
    assert len(batches) == len(loader) == 7  # (203 - 1) // 10 = 20 windows: 6 batches of 3 and one of 2
    assert batches[-1][0].shape == (2, 10)
    xs = torch.cat([b[0] for b in batches])
    ys = torch.cat([b[1] for b in batches])
    assert torch.equal(xs.flatten(), torch.arange(200))
    assert torch.equal(ys.flatten(), torch.arange(1, 201))
    assert len(list(SequentialLoader(ds, batch_size=4, block_size=10, max_batches=2))) == 2


def test_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="meta.json"):
        TokenDataset(tmp_path / "nothing", "train")
    ds = TokenDataset(_make_dataset(tmp_path / "d", n_val=5), "val")
    with pytest.raises(ValueError, match="fewer than block_size"):
        RandomWindowLoader(ds, batch_size=2, block_size=8, seed=0)
    with pytest.raises(ValueError, match="too few"):
        SequentialLoader(ds, batch_size=2, block_size=8)
