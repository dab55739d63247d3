"""Learning-rate schedules at their key points."""

import math

import pytest

from llmlab.train.schedule import LRSchedule


def test_cosine_warmup_peak_mid_end() -> None:
    s = LRSchedule("cosine", lr=1e-3, warmup_iters=100, min_lr=1e-4, decay_iters=2000)
    assert s(0) == pytest.approx(1e-3 * 1 / 101)  # never 0 on the first step
    assert s(50) == pytest.approx(1e-3 * 51 / 101)
    assert s(100) == pytest.approx(1e-3)  # peak right after warmup
    assert s(1050) == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4))  # half-way: the mean of peak and floor
    assert s(1999) == pytest.approx(1e-4, rel=1e-4)
    assert s(2000) == s(5000) == 1e-4  # floor after decay_iters
    values = [s(i) for i in range(100, 2001)]
    assert all(a >= b for a, b in zip(values[:-1], values[1:], strict=True))  # monotone decay


def test_linear_and_constant() -> None:
    lin = LRSchedule("linear", lr=1.0, warmup_iters=10, min_lr=0.0, decay_iters=110)
    assert lin(9) == pytest.approx(10 / 11)
    assert lin(10) == 1.0 and lin(60) == pytest.approx(0.5) and lin(110) == 0.0
    const = LRSchedule("constant", lr=0.3, warmup_iters=2, min_lr=0.0, decay_iters=0)
    assert [const(i) for i in range(4)] == pytest.approx([0.1, 0.2, 0.3, 0.3])
    no_warmup = LRSchedule("cosine", lr=1.0, warmup_iters=0, min_lr=0.0, decay_iters=4)
    assert [no_warmup(i) for i in range(5)] == pytest.approx(
        [1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4)), 0.0]
    )


def test_schedule_errors() -> None:
    with pytest.raises(ValueError, match="unknown schedule 'cosin'.*cosine, linear, constant"):
        LRSchedule("cosin", 1.0, 0, 0.0, 10)
    with pytest.raises(ValueError, match="decay_iters"):
        LRSchedule("cosine", 1.0, 100, 0.0, 10)
