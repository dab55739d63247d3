"""Suite-wide settings: one CPU thread per test process.

The suite runs as `pytest -n 2` on two cores: two workers each using torch's default thread pool (plus
the torchrun/CLI subprocesses they start) oversubscribe the cores, and a tiny-model step goes from
milliseconds to seconds. One thread per process keeps every test fast and the timings stable.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by subprocesses (CLI runs, torchrun ranks)
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
