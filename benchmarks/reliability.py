"""Reliability table: bad inputs per verb, and hard kills of training runs, as a new user would meet them.

Part 1 runs ~190 bad inputs (`python -m llmlab ...` subprocesses, each in its own copy of tiny fixtures) and
classifies every outcome:

- clean: exit 2 and stderr is exactly one line starting ``llmlab: error:``;
- usage: the argument parser's own usage error (typer/click box, exit 2, no traceback);
- traceback: a Python traceback on stderr;
- silent: exit 0 although the input is bad (nothing said, or the bad value used);
- half-written: after a failure something was left behind (a new file or folder anywhere in the case folder,
  temp files included), or a file that existed before was changed or deleted (a user's ``thesis.tex``), or a
  secret from the environment was copied into a file — whatever the exit status;
- other: any other failure (several lines, no ``llmlab: error:`` prefix, killed by a signal, hung).

Part 2 SIGKILLs (and Ctrl-Cs) tiny `pretrain` and `finetune` runs at random moments after training started,
resumes each with ``--resume`` and counts a run as lost when the resume fails or its metrics rows (timing
columns dropped) or final weights differ from an uninterrupted run.

Prints a markdown table per part on stdout (progress on stderr) and one JSON object on the last line.

    python benchmarks/reliability.py                 # ~5-10 min on 2 cores
    python benchmarks/reliability.py --only generate --kills 0
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECRET_VAR = "LLMLAB_RELIABILITY_SECRET"
SECRET = "reliability-secret-5f3a9c"
OUTCOMES = ["clean", "usage", "traceback", "silent", "half-written", "other"]
VERBS = [
    "tokenizer train",
    "data prepare",
    "pretrain",
    "finetune",
    "generate",
    "chat",
    "eval perplexity",
    "convert",
    "merge",
    "quickstart",
]
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
# Root ignores file permissions: stand-ins that still make the OS refuse (EPERM under /sys, EIO reading mem).
NO_WRITE_DIR = "/sys/llmlab-reliability" if ROOT else "locked"
UNREADABLE_FILE = "/proc/self/mem" if ROOT else "unreadable.txt"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclasses.dataclass
class Case:
    """One bad input: `args` after ``python -m llmlab``, run in a fresh copy of the fixtures."""

    verb: str
    name: str
    kind: str  # path | permission | encoding | number | choice | device | shard | output-file | foreign | env | ...
    args: list[str]
    stdin: bytes | None = None
    fsize_limit: int | None = None  # RLIMIT_FSIZE in bytes: a stand-in for a full disk (writes fail with EFBIG)
    accept_warning: bool = False  # exit 0 with a warning on stderr is also a fair answer


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LLMLAB_DEBUG", "LLMLAB_ALLOW_ENV_IN_CONFIG")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", SECRET_VAR: SECRET, "COLUMNS": "120"})
    env.update(extra or {})
    return env


def llmlab(args: list[str], cwd: Path, timeout: float = 300, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "llmlab", *args], cwd=cwd, env=_env(), capture_output=True, timeout=timeout, **kw
    )


def _check(proc: subprocess.CompletedProcess[bytes], what: str) -> None:
    if proc.returncode != 0:
        raise RuntimeError(f"fixture step failed: {what}\n{proc.stderr.decode(errors='replace')[-2000:]}")


# ----------------------------------------------------------------------------------------------- fixtures


def _pretrain_yaml(out_dir: str, iters: int, extra: str = "") -> str:
    return f"""preset: nano-char
model:
  block_size: 64
  n_layer: 1
  n_head: 2
  n_embd: 16
data:
  dir: data
train:
  batch_size: 2
  max_iters: {iters}
  eval_interval: {max(iters // 2, 1)}
  eval_iters: 1
  log_interval: 1
  save_interval: 1
  device: cpu
  precision: fp32
  tensorboard: false
  progress: false
schedule:
  warmup_iters: 1
  min_lr: 1.0e-4
out_dir: {out_dir}
{extra}"""


def _finetune_yaml(out_dir: str, iters: int) -> str:
    return f"""base: run
method: lora
peft:
  r: 2
  lora_alpha: 4
  target_modules: [c_attn]
data:
  train: sft.jsonl
  val_fraction: 0.2
  template: plain
  max_length: 32
train:
  batch_size: 2
  max_iters: {iters}
  eval_interval: {max(iters // 2, 1)}
  save_interval: 1
  log_interval: 1
  device: cpu
  precision: fp32
  tensorboard: false
  progress: false
out_dir: {out_dir}
"""


def build_fixtures(fx: Path) -> None:
    """Tiny inputs for every verb: a char corpus, a 2-step pretrain run, a 2-step LoRA run, broken copies."""
    rng = random.Random(0)
    fx.mkdir(parents=True)
    words = "the cat sat on a mat and then it ran to see the dog who was glad to meet her friend at noon".split()
    paras = [" ".join(rng.choice(words) for _ in range(rng.randint(8, 30))) + "." for _ in range(200)]
    (fx / "corpus.txt").write_text("\n\n".join(paras) + "\n", encoding="utf-8")
    (fx / "latin1.txt").write_bytes(("caf\xe9 cr\xe8me br\xfbl\xe9e. " * 40 + "\n").encode("latin-1"))
    (fx / "empty.txt").write_text("")
    (fx / "notes.txt").write_text("my notes\n")
    for name, extra in [("thesis", {}), ("thesis_cfg", {"config.yaml": "mine: 1\n", "metrics.jsonl": "{}\n"}),
                        ("thesis_meta", {"meta.json": "{}\n"}), ("qs_target/source", {})]:  # fmt: skip
        (fx / name).mkdir(parents=True)
        (fx / name / "thesis.tex").write_text("\\documentclass{article} my thesis\n")
        for file, text in extra.items():
            (fx / name / file).write_text(text)
    (fx / "emptydir").mkdir()
    with open(fx / "sft.jsonl", "w", encoding="utf-8") as f:
        for _ in range(24):
            row = {"prompt": f"say {rng.choice(words)}", "completion": f" {rng.choice(words)} {rng.choice(words)}"}
            f.write(json.dumps(row) + "\n")
    (fx / "sft_badjson.jsonl").write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a", "compl\n')
    (fx / "sft_latin1.jsonl").write_bytes('{"prompt": "caf\xe9", "completion": "cr\xe8me"}\n'.encode("latin-1") * 8)
    (fx / "sft_empty.jsonl").write_text("")
    (fx / "sft_nofields.jsonl").write_text('{"foo": 1}\n' * 8)
    (fx / "bad.gguf").write_bytes(b"GGUF" + bytes(rng.randrange(256) for _ in range(4000)))
    (fx / "bad.yaml").write_bytes("# caf\xe9\nout_dir: x\n".encode("latin-1"))
    (fx / "list.yaml").write_text("- a\n- b\n")
    (fx / "bad.jinja").write_bytes("{{ caf\xe9 }}".encode("latin-1"))
    (fx / "latin1_dir").mkdir()
    shutil.copy(fx / "latin1.txt", fx / "latin1_dir" / "a.txt")

    _check(llmlab(["data", "prepare", "-s", "corpus.txt", "--out", "data", "--tokenizer-kind", "char"], fx), "data")
    shutil.copytree(fx / "data", fx / "data_odd")
    with open(fx / "data_odd" / "train.bin", "ab") as f:
        f.write(b"\x01")  # uint16 shard with an odd byte count
    (fx / "pt.yaml").write_text(_pretrain_yaml("run", 2))
    (fx / "pt_long.yaml").write_text(_pretrain_yaml("run_long", 120))
    (fx / "pt_env.yaml").write_text(_pretrain_yaml(f"run_${{oc.env:{SECRET_VAR}}}", 2))
    (fx / "pt_data_is_out.yaml").write_text(_pretrain_yaml("data", 2))
    _check(llmlab(["pretrain", "-c", "pt.yaml"], fx), "pretrain")

    (fx / "ft.yaml").write_text(_finetune_yaml("ft", 2))
    (fx / "ft_long.yaml").write_text(_finetune_yaml("ft_long", 60))
    _check(llmlab(["finetune", "-c", "ft.yaml"], fx), "finetune")

    last = fx / "run" / "checkpoints" / "last"
    shutil.copytree(last, fx / "ckpt_trunc", ignore=shutil.ignore_patterns("trainer_state*"))
    weights = fx / "ckpt_trunc" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    shutil.copytree(fx / "ft" / "adapter", fx / "adapter_badcfg")
    (fx / "adapter_badcfg" / "adapter_config.json").write_text("{not json")
    (fx / "foreign.gguf").write_text("my own file, not a model\n")


# ----------------------------------------------------------------------------------------------- cases

CKPT = "run/checkpoints/last"
TINY = ["-c", "run"]
GEN = ["generate", *TINY, "--prompt", "the cat", "--max-new-tokens", "3", "--seed", "1"]
CHAT = ["chat", *TINY, "--max-new-tokens", "3", "--template", "chatml", "--seed", "1"]
PPL = ["eval", "perplexity", *TINY, "-f", "corpus.txt"]
TOK = ["tokenizer", "train", "corpus.txt", "--kind", "char"]
PREP = ["data", "prepare", "-s", "corpus.txt", "--tokenizer-kind", "char"]
PT = ["pretrain", "-c", "pt.yaml"]
FT = ["finetune", "-c", "ft.yaml"]
QS = ["quickstart", "--fast", "--max-iters", "2"]
HI = b"hi\n"


def _cases_tokenizer_data() -> list[Case]:
    t, d = "tokenizer train", "data prepare"
    return [
        Case(t, "missing source file", "path", ["tokenizer", "train", "nope.txt", "--kind", "char", "--out", "tk"]),
        Case(t, "non-UTF-8 source", "encoding", ["tokenizer", "train", "latin1.txt", "--kind", "char", "--out", "tk"]),
        Case(t, "folder of non-UTF-8 files", "encoding", ["tokenizer", "train", "latin1_dir", "--out", "tk"]),
        Case(t, "empty source", "empty", ["tokenizer", "train", "empty.txt", "--kind", "char", "--out", "tk"]),
        Case(t, "empty folder", "empty", ["tokenizer", "train", "emptydir", "--out", "tk"]),
        Case(t, "unreadable source", "permission", ["tokenizer", "train", UNREADABLE_FILE, "--out", "tk"]),
        Case(t, "unknown kind", "choice", [*TOK[:3], "--kind", "xyz", "--out", "tk"]),
        Case(t, "vocab size -5", "number", [*TOK[:3], "--vocab-size", "-5", "--out", "tk"]),
        Case(t, "vocab size 0", "number", [*TOK[:3], "--vocab-size", "0", "--out", "tk"]),
        Case(t, "vocab size not a number", "number", [*TOK[:3], "--vocab-size", "abc", "--out", "tk"]),
        Case(t, "min frequency -1", "number", [*TOK[:3], "--min-frequency", "-1", "--out", "tk"]),
        Case(t, "jsonl without the text field", "input", ["tokenizer", "train", "sft.jsonl", "--out", "tk"]),
        Case(t, "out is a regular file", "output-file", [*TOK, "--out", "notes.txt"]),
        Case(t, "out under a regular file", "output-file", [*TOK, "--out", "notes.txt/tk"]),
        Case(t, "out not writable", "permission", [*TOK, "--out", f"{NO_WRITE_DIR}/tk"]),
        Case(t, "out is a foreign non-empty folder", "foreign", [*TOK, "--out", "thesis"]),
        Case(t, "disk full while saving", "disk", [*TOK, "--out", "tk"], fsize_limit=64),
        Case(d, "missing source", "path", ["data", "prepare", "-s", "nope.txt", "--out", "dp"]),
        Case(d, "non-UTF-8 source", "encoding", ["data", "prepare", "-s", "latin1.txt", "--out", "dp"]),
        Case(d, "folder of non-UTF-8 files", "encoding", ["data", "prepare", "-s", "latin1_dir", "--out", "dp"]),
        Case(d, "empty source", "empty", ["data", "prepare", "-s", "empty.txt", "--out", "dp"]),
        Case(d, "unreadable source", "permission", ["data", "prepare", "-s", UNREADABLE_FILE, "--out", "dp"]),
        Case(d, "unknown tokenizer kind", "choice", [*PREP[:4], "--tokenizer-kind", "xyz", "--out", "dp"]),
        Case(d, "vocab size -1", "number", [*PREP[:4], "--vocab-size", "-1", "--out", "dp"]),
        Case(d, "val fraction 1.5", "number", [*PREP, "--val-fraction", "1.5", "--out", "dp"]),
        Case(d, "val fraction nan", "number", [*PREP, "--val-fraction", "nan", "--out", "dp"]),
        Case(d, "unknown dtype", "choice", [*PREP, "--dtype", "int8", "--out", "dp"]),
        Case(d, "unknown documents mode", "choice", [*PREP, "--documents", "xyz", "--out", "dp"]),
        Case(d, "unknown split mode", "choice", [*PREP, "--split-mode", "xyz", "--out", "dp"]),
        Case(d, "missing tokenizer file", "path", [*PREP[:4], "--tokenizer", "nope.json", "--out", "dp"]),
        Case(
            d,
            "tokenizer is not JSON (latin-1 text)",
            "encoding",
            [*PREP[:4], "--tokenizer", "latin1.txt", "--out", "dp"],
        ),
        Case(d, "out is a regular file", "output-file", [*PREP, "--out", "notes.txt"]),
        Case(d, "out under a regular file", "output-file", [*PREP, "--out", "notes.txt/dp"]),
        Case(d, "out not writable", "permission", [*PREP, "--out", f"{NO_WRITE_DIR}/dp"]),
        Case(d, "out is a foreign non-empty folder", "foreign", [*PREP, "--out", "thesis"]),
        Case(d, "out is a foreign folder with meta.json", "foreign", [*PREP, "--out", "thesis_meta"]),
        Case(d, "out is the source folder", "foreign", ["data", "prepare", "-s", "thesis", "--out", "thesis"]),
        Case(d, "out inside the source folder", "foreign", ["data", "prepare", "-s", "thesis", "--out", "thesis/dp"]),
        Case(d, "unknown override key", "config", [*PREP, "--out", "dp", "clean.foo=1"]),
        Case(d, "override of the wrong type", "config", [*PREP, "--out", "dp", "clean.near_dedup.threshold=abc"]),
        Case(d, "near-dedup threshold 2", "number", [*PREP, "--out", "dp", "clean.near_dedup.threshold=2"]),
        Case(d, "env interpolation in override", "env", [*PREP, f"text_field=${{oc.env:{SECRET_VAR}}}", "--out", "dp"]),
        Case(d, "missing --config", "path", [*PREP, "--config", "nope.yaml", "--out", "dp"]),
        Case(d, "config is a YAML list", "config", [*PREP, "--config", "list.yaml", "--out", "dp"]),
        Case(d, "non-UTF-8 config", "encoding", [*PREP, "--config", "bad.yaml", "--out", "dp"]),
        Case(d, "config is a folder", "path", [*PREP, "--config", "thesis", "--out", "dp"]),
        Case(d, "disk full while writing shards", "disk", [*PREP, "--out", "dp"], fsize_limit=2048),
    ]


def _cases_pretrain() -> list[Case]:
    p = "pretrain"
    return [
        Case(p, "missing --config", "path", ["pretrain", "-c", "nope.yaml"]),
        Case(p, "non-UTF-8 config", "encoding", ["pretrain", "-c", "bad.yaml"]),
        Case(p, "config is a YAML list", "config", ["pretrain", "-c", "list.yaml"]),
        Case(p, "data dir missing", "path", [*PT, "data.dir=nope"]),
        Case(p, "data dir is a foreign folder", "path", [*PT, "data.dir=thesis"]),
        Case(p, "odd-sized shard", "shard", [*PT, "data.dir=data_odd"]),
        Case(p, "lr nan", "number", [*PT, "optim.lr=nan"]),
        Case(p, "lr -1", "number", [*PT, "optim.lr=-1"]),
        Case(p, "unknown optimizer", "choice", [*PT, "optim.name=xyz"]),
        Case(p, "unknown schedule", "choice", [*PT, "schedule.name=xyz"]),
        Case(p, "negative warmup", "number", [*PT, "schedule.warmup_iters=-5"]),
        Case(p, "grad clip nan", "number", [*PT, "optim.grad_clip=nan"]),
        Case(p, "unknown device", "device", [*PT, "train.device=xyz"]),
        Case(p, "cuda on a CPU-only torch", "device", [*PT, "train.device=cuda"]),
        Case(p, "fp16 on CPU", "choice", [*PT, "train.precision=fp16"]),
        Case(p, "unknown precision", "choice", [*PT, "train.precision=xyz"]),
        Case(p, "batch size 0", "number", [*PT, "train.batch_size=0"]),
        Case(p, "max iters -1", "number", [*PT, "train.max_iters=-1"]),
        Case(p, "batch size not a number", "config", [*PT, "train.batch_size=abc"]),
        Case(p, "heads do not divide width", "number", [*PT, "model.n_head=3"]),
        Case(p, "block size 0", "number", [*PT, "model.block_size=0"]),
        Case(p, "unknown preset", "choice", [*PT, "preset=xyz"]),
        Case(p, "unknown key", "config", [*PT, "train.foo=1"]),
        Case(p, "override without =", "config", [*PT, "train.lr"]),
        Case(p, "out dir is a foreign non-empty folder", "foreign", [*PT, "out_dir=thesis"]),
        Case(p, "out dir holds config.yaml/metrics.jsonl", "foreign", [*PT, "out_dir=thesis_cfg"]),
        Case(p, "out dir is the data folder", "foreign", [*PT, "out_dir=data"]),
        Case(p, "out dir is a regular file", "output-file", [*PT, "out_dir=notes.txt"]),
        Case(p, "out dir under a regular file", "output-file", [*PT, "out_dir=notes.txt/run"]),
        Case(p, "out dir not writable", "permission", [*PT, f"out_dir={NO_WRITE_DIR}/run"]),
        Case(p, "existing run without --resume", "foreign", [*PT]),
        Case(p, "--resume without a run", "path", [*PT, "out_dir=fresh", "--resume"]),
        Case(p, "env interpolation in override", "env", [*PT, f"out_dir=${{oc.env:{SECRET_VAR}}}"]),
        Case(p, "env interpolation in YAML", "env", ["pretrain", "-c", "pt_env.yaml"]),
        Case(p, "disk full while saving", "disk", [*PT, "out_dir=full"], fsize_limit=4096),
    ]


def _cases_finetune() -> list[Case]:
    f = "finetune"
    return [
        Case(f, "missing --config", "path", ["finetune", "-c", "nope.yaml"]),
        Case(f, "train file missing", "path", [*FT, "data.train=nope.jsonl", "out_dir=o"]),
        Case(f, "non-UTF-8 train file", "encoding", [*FT, "data.train=sft_latin1.jsonl", "out_dir=o"]),
        Case(f, "invalid JSON line", "input", [*FT, "data.train=sft_badjson.jsonl", "out_dir=o"]),
        Case(f, "empty train file", "empty", [*FT, "data.train=sft_empty.jsonl", "out_dir=o"]),
        Case(f, "records without known fields", "input", [*FT, "data.train=sft_nofields.jsonl", "out_dir=o"]),
        Case(f, "unknown method", "choice", [*FT, "--method", "xyz", "out_dir=o"]),
        Case(f, "lora r not a number", "config", [*FT, "peft.r=abc", "out_dir=o"]),
        Case(f, "lora r -1", "number", [*FT, "peft.r=-1", "out_dir=o"]),
        Case(f, "unknown peft key", "config", [*FT, "peft.foo=1", "out_dir=o"]),
        Case(f, "lr nan", "number", [*FT, "optim.lr=nan", "out_dir=o"]),
        Case(f, "unknown schedule", "choice", [*FT, "schedule.name=xyz", "out_dir=o"]),
        Case(f, "unknown device", "device", [*FT, "train.device=xyz", "out_dir=o"]),
        Case(f, "fp16 on CPU", "choice", [*FT, "train.precision=fp16", "out_dir=o"]),
        Case(f, "unknown template", "choice", [*FT, "data.template=xyz", "out_dir=o"]),
        Case(f, "max length 0", "number", [*FT, "data.max_length=0", "out_dir=o"]),
        Case(f, "val fraction 2", "number", [*FT, "data.val_fraction=2", "out_dir=o"]),
        Case(f, "grad accum 0", "number", [*FT, "train.grad_accum=0", "out_dir=o"]),
        Case(f, "base missing", "path", [*FT, "base=nope", "out_dir=o"]),
        Case(f, "base is a foreign folder", "path", [*FT, "base=thesis", "out_dir=o"]),
        Case(f, "base is a corrupt checkpoint", "input", [*FT, "base=ckpt_trunc", "out_dir=o"]),
        Case(f, "out dir is a foreign folder", "foreign", [*FT, "out_dir=thesis"]),
        Case(
            f, "overwrite a foreign folder with config.yaml", "foreign", [*FT, "out_dir=thesis_cfg", "overwrite=true"]
        ),
        Case(f, "out dir is a regular file", "output-file", [*FT, "out_dir=notes.txt"]),
        Case(f, "out dir not writable", "permission", [*FT, f"out_dir={NO_WRITE_DIR}/ft"]),
        Case(f, "--resume without a run", "path", [*FT, "out_dir=fresh", "--resume"]),
        Case(f, "env interpolation in override", "env", [*FT, f"out_dir=ft_${{oc.env:{SECRET_VAR}}}"]),
    ]


def _cases_decoding() -> list[Case]:
    g, c, e = "generate", "chat", "eval perplexity"
    return [
        Case(g, "checkpoint missing", "path", ["generate", "-c", "nope", "--prompt", "a"]),
        Case(g, "checkpoint is a foreign folder", "path", ["generate", "-c", "thesis", "--prompt", "a"]),
        Case(g, "checkpoint is a regular file", "path", ["generate", "-c", "notes.txt", "--prompt", "a"]),
        Case(g, "garbage .gguf", "input", ["generate", "-c", "bad.gguf", "--prompt", "a"]),
        Case(g, "truncated safetensors", "input", ["generate", "-c", "ckpt_trunc", "--prompt", "a"]),
        Case(g, "temperature nan", "number", [*GEN, "--temperature", "nan"]),
        Case(g, "temperature -1", "number", [*GEN, "--temperature", "-1"]),
        Case(g, "top-p 0", "number", [*GEN, "--top-p", "0"]),
        Case(g, "top-p nan", "number", [*GEN, "--top-p", "nan"]),
        Case(g, "min-p nan", "number", [*GEN, "--min-p", "nan"]),
        Case(g, "repetition penalty 0", "number", [*GEN, "--repetition-penalty", "0"]),
        Case(g, "frequency penalty nan", "number", [*GEN, "--frequency-penalty", "nan"]),
        Case(g, "top-k -1", "number", [*GEN, "--top-k", "-1"]),
        Case(g, "max new tokens -1", "number", [*GEN, "--max-new-tokens", "-1"]),
        Case(g, "num beams 0", "number", [*GEN, "--num-beams", "0"]),
        Case(g, "unknown device", "device", [*GEN, "--device", "xyz"]),
        Case(g, "cuda on a CPU-only torch", "device", [*GEN, "--device", "cuda"]),
        Case(g, "empty stop string", "input", [*GEN, "--stop", ""]),
        Case(g, "unknown chat template", "choice", [*GEN, "--chat", "--template", "xyz"]),
        Case(g, "draft model missing", "path", [*GEN, "--draft", "nope"]),
        Case(
            g,
            "characters outside the vocabulary",
            "input",
            [*GEN[:3], "--prompt", "Grüße 你好", *GEN[5:]],
            accept_warning=True,
        ),  # fmt: skip
        Case(c, "non-UTF-8 piped stdin", "encoding", CHAT, stdin="caf\xe9\n".encode("latin-1")),
        Case(c, "checkpoint missing", "path", ["chat", "-c", "nope"], stdin=HI),
        Case(c, "checkpoint is a foreign folder", "path", ["chat", "-c", "thesis"], stdin=HI),
        Case(c, "unknown template", "choice", [*CHAT[:3], "--template", "xyz"], stdin=HI),
        Case(c, "template file missing", "path", [*CHAT[:3], "--template", "nope.jinja"], stdin=HI),
        Case(c, "non-UTF-8 template file", "encoding", [*CHAT[:3], "--template", "bad.jinja"], stdin=HI),
        Case(c, "temperature nan", "number", [*CHAT, "--temperature", "nan"], stdin=HI),
        Case(c, "top-p 0", "number", [*CHAT, "--top-p", "0"], stdin=HI),
        Case(c, "repetition penalty 0", "number", [*CHAT, "--repetition-penalty", "0"], stdin=HI),
        Case(c, "unknown device", "device", [*CHAT, "--device", "xyz"], stdin=HI),
        Case(c, "unknown dtype", "choice", [*CHAT, "--dtype", "xyz"], stdin=HI),
        Case(c, "context tokens 1", "number", [*CHAT, "--context-tokens", "1"], stdin=HI),
        Case(c, "piped message longer than the context", "input", [*CHAT], stdin=b"the cat " * 200 + b"\n"),
        Case(e, "text file missing", "path", [*PPL[:4], "-f", "nope.txt"]),
        Case(e, "non-UTF-8 text file", "encoding", [*PPL[:4], "-f", "latin1.txt"]),
        Case(e, "empty text file", "empty", [*PPL[:4], "-f", "empty.txt"]),
        Case(e, "text file is a folder", "path", [*PPL[:4], "-f", "thesis"]),
        Case(e, "unreadable text file", "permission", [*PPL[:4], "-f", UNREADABLE_FILE]),
        Case(e, "checkpoint missing", "path", ["eval", "perplexity", "-c", "nope", "-f", "corpus.txt"]),
        Case(e, "checkpoint is a foreign folder", "path", ["eval", "perplexity", "-c", "thesis", "-f", "corpus.txt"]),
        Case(e, "garbage .gguf", "input", ["eval", "perplexity", "-c", "bad.gguf", "-f", "corpus.txt"]),
        Case(e, "unknown device", "device", [*PPL, "--device", "xyz"]),
        Case(e, "stride 0", "number", [*PPL, "--stride", "0"]),
        Case(e, "batch size 0", "number", [*PPL, "--batch-size", "0"]),
    ]


def _cases_outputs() -> list[Case]:
    v, m, q = "convert", "merge", "quickstart"
    conv = ["convert", "--from", CKPT]
    merge = ["merge", "-a", "ft/adapter"]
    return [
        Case(v, "source missing", "path", ["convert", "--from", "nope", "--to", "o"]),
        Case(v, "source is a foreign folder", "path", ["convert", "--from", "thesis", "--to", "o"]),
        Case(v, "garbage .gguf source", "input", ["convert", "--from", "bad.gguf", "--to", "o"]),
        Case(v, "truncated safetensors source", "input", ["convert", "--from", "ckpt_trunc", "--to", "o"]),
        Case(v, "unknown format", "choice", [*conv, "--to", "o", "--format", "xyz"]),
        Case(v, "unknown dtype", "choice", [*conv, "--to", "o", "--dtype", "xyz"]),
        Case(v, "q8_0 for an HF folder", "choice", [*conv, "--to", "o", "--format", "hf", "--dtype", "q8_0"]),
        Case(v, "to is a regular file", "output-file", [*conv, "--to", "notes.txt"]),
        Case(v, "to is a foreign .gguf file", "foreign", [*conv, "--to", "foreign.gguf"]),
        Case(v, "to under a regular file", "output-file", [*conv, "--to", "notes.txt/o"]),
        Case(v, "to not writable", "permission", [*conv, "--to", f"{NO_WRITE_DIR}/o"]),
        Case(v, "to is a foreign non-empty folder", "foreign", [*conv, "--to", "thesis"]),
        Case(v, "--overwrite a foreign folder", "foreign", [*conv, "--to", "thesis", "--overwrite"]),
        Case(v, "--overwrite the folder holding the source", "foreign", [*conv, "--to", "run", "--overwrite"]),
        Case(v, "to inside the source", "foreign", [*conv, "--to", f"{CKPT}/o"]),
        Case(v, "disk full while writing", "disk", [*conv, "--to", "o.gguf"], fsize_limit=4096),
        Case(m, "adapter missing", "path", ["merge", "-a", "nope", "-o", "o"]),
        Case(m, "adapter is a foreign folder", "path", ["merge", "-a", "thesis", "-o", "o"]),
        Case(m, "corrupt adapter_config.json", "input", ["merge", "-a", "adapter_badcfg", "-o", "o"]),
        Case(m, "base missing", "path", [*merge, "-o", "o", "--base", "nope"]),
        Case(m, "base is a foreign folder", "path", [*merge, "-o", "o", "--base", "thesis"]),
        Case(m, "unknown format", "choice", [*merge, "-o", "o", "--format", "xyz"]),
        Case(m, "unknown dtype", "choice", [*merge, "-o", "o", "--dtype", "xyz"]),
        Case(m, "out is a regular file", "output-file", [*merge, "-o", "notes.txt"]),
        Case(m, "out under a regular file", "output-file", [*merge, "-o", "notes.txt/o"]),
        Case(m, "out not writable", "permission", [*merge, "-o", f"{NO_WRITE_DIR}/o"]),
        Case(m, "out is a foreign non-empty folder", "foreign", [*merge, "-o", "thesis"]),
        Case(m, "--overwrite a foreign folder", "foreign", [*merge, "-o", "thesis", "--overwrite"]),
        Case(m, "--overwrite the adapter's own run", "foreign", [*merge, "-o", "ft", "--overwrite"]),
        Case(q, "out is a foreign non-empty folder", "foreign", [*QS, "--out", "thesis"]),
        Case(q, "out holds a source/ folder", "foreign", [*QS, "--out", "qs_target"]),
        Case(q, "out is a regular file", "output-file", [*QS, "--out", "notes.txt"]),
        Case(q, "out under a regular file", "output-file", [*QS, "--out", "notes.txt/qs"]),
        Case(q, "out not writable", "permission", [*QS, "--out", f"{NO_WRITE_DIR}/qs"]),
        Case(q, "max iters 0", "number", ["quickstart", "--fast", "--max-iters", "0", "--out", "qs"]),
        Case(q, "max iters not a number", "number", ["quickstart", "--fast", "--max-iters", "abc", "--out", "qs"]),
    ]


def all_cases() -> list[Case]:
    return [*_cases_tokenizer_data(), *_cases_pretrain(), *_cases_finetune(), *_cases_decoding(), *_cases_outputs()]


# ----------------------------------------------------------------------------------------------- running a case


def _snapshot(folder: Path) -> dict[str, str]:
    """relative path -> sha256 (files) or 'dir' for everything under `folder`."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink() or not path.is_file():
            out[rel] = "dir" if path.is_dir() else "other"
            continue
        try:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            out[rel] = "unreadable"
    return out


def _secret_files(folder: Path) -> list[str]:
    hits = []
    for path in folder.rglob("*"):
        if SECRET in str(path.relative_to(folder)):
            hits.append(str(path.relative_to(folder)))
        elif path.is_file() and not path.is_symlink():
            try:
                if SECRET.encode() in path.read_bytes():
                    hits.append(str(path.relative_to(folder)))
            except OSError:
                pass
    return hits


def _preexec(limit: int | None) -> Callable[[], None] | None:
    if limit is None:
        return None

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _prepare_case_dir(fx: Path, work: Path) -> None:
    shutil.copytree(fx, work, symlinks=True)
    if not ROOT:
        (work / "locked").mkdir()
        (work / "locked").chmod(0o555)
        shutil.copy(work / "corpus.txt", work / "unreadable.txt")
        (work / "unreadable.txt").chmod(0o000)


def classify(case: Case, rc: int, stderr: str, before: dict[str, str], after: dict[str, str], secrets: list[str]):
    """(outcome, detail) for one finished case; see the module docstring for the outcomes."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    last = lines[-1][:200] if lines else ""
    damaged = [p for p, h in before.items() if after.get(p) != h]
    if damaged:
        return "half-written", f"changed or deleted: {', '.join(damaged[:3])}"
    if secrets:
        return "half-written", f"secret copied into {', '.join(secrets[:2])}"
    left = [p for p in after if p not in before]
    if rc != 0 and left:
        return "half-written", f"left behind: {', '.join(left[:3])}; stderr: {last}"
    if "Traceback (most recent call last)" in stderr:
        return "traceback", last
    if rc == 0:
        if case.accept_warning and lines:
            return "clean", f"warning: {last}"
        return "silent", "exit 0" + (f"; stderr: {last}" if last else "")
    if rc == 2 and len(lines) == 1 and lines[0].startswith("llmlab: error: "):
        return "clean", lines[0][:200]
    # piped chat goes on after a failed message and exits 1 (documented in docs/chat.md): one line per failure
    if case.verb == "chat" and rc == 1 and lines and all(line.startswith("llmlab: error: ") for line in lines):
        return "clean", f"exit 1: {lines[0][:190]}"
    if rc == 2 and any(w in stderr for w in ("Usage:", "Invalid value", "No such option", "Missing ")):
        return "usage", next((line.strip("│ ") for line in lines if "Invalid" in line or "No such" in line), last)
    if rc < 0:
        return "other", f"killed by signal {-rc}"
    return "other", f"exit {rc}, {len(lines)} stderr lines; last: {last}"


def run_case(case: Case, fx: Path, root: Path, index: int) -> dict[str, object]:
    work = root / f"{index:03d}"
    _prepare_case_dir(fx, work)
    before = _snapshot(work)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "llmlab", *case.args],
            cwd=work,
            env=_env(),
            input=case.stdin if case.stdin is not None else b"",
            capture_output=True,
            timeout=300,
            preexec_fn=_preexec(case.fsize_limit),
        )
        rc, stderr = proc.returncode, proc.stderr.decode("utf-8", errors="replace")
    except subprocess.TimeoutExpired:
        rc, stderr = -1, "timed out after 300 s"
    seconds = time.perf_counter() - start
    if not ROOT:
        (work / "locked").chmod(0o755)
    after = _snapshot(work)
    outcome, detail = classify(case, rc, stderr, before, after, _secret_files(work))
    if rc == -1 and stderr.startswith("timed out"):
        outcome, detail = "other", stderr
    return {
        "verb": case.verb,
        "name": case.name,
        "kind": case.kind,
        "args": case.args,
        "exit": rc,
        "outcome": outcome,
        "detail": detail,
        "seconds": round(seconds, 1),
    }


# ----------------------------------------------------------------------------------------------- kills

TIMING_WORDS = ("time", "per_sec", "tok_s", "elapsed", "eta", "mem", "rss", "mfu", "wall")


def _metric_rows(run: Path) -> list[dict[str, object]]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows.append({k: v for k, v in row.items() if not any(w in k for w in TIMING_WORDS)})
    return rows


def _logged_rows(path: Path) -> int:
    """Complete rows in a metrics.jsonl being written (0 when it does not exist yet)."""
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def _tensor_digest(path: Path) -> str:
    """sha256 over a safetensors file's tensors (name, dtype, shape, bytes) and metadata, in sorted order.

    The raw file is not compared: the safetensors writer may order its header differently from run to run.
    """
    blob = path.read_bytes()
    size = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8 : 8 + size])
    digest = hashlib.sha256(json.dumps(header.pop("__metadata__", {}), sort_keys=True).encode())
    for name in sorted(header):
        info = header[name]
        start, end = info["data_offsets"]
        digest.update(f"{name}:{info['dtype']}:{info['shape']}".encode())
        digest.update(blob[8 + size + start : 8 + size + end])
    return digest.hexdigest()


def _weights(run: Path) -> dict[str, str]:
    """Digest of every .safetensors file under `run` outside hidden folders (the final weights)."""
    out = {}
    for path in sorted(run.rglob("*.safetensors")):
        rel = path.relative_to(run)
        if not any(part.startswith(".") for part in rel.parts):
            out[str(rel)] = _tensor_digest(path)
    return out


def _has_saved_state(run: Path) -> bool:
    ckpts = run / "checkpoints"
    return ckpts.is_dir() and any(ckpts.iterdir())


def _timed_run(args: list[str], cwd: Path, started: Path) -> float:
    """Run llmlab `args` to the end; return the seconds from the moment `started` appeared to the exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmlab", *args], cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    while proc.poll() is None and not started.exists():
        time.sleep(0.01)
    t0 = time.monotonic()
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"uninterrupted run failed: {args}\n{err.decode(errors='replace')[-2000:]}")
    return time.monotonic() - t0


def kill_trial(verb: str, config: str, out_dir: str, fx: Path, work: Path, sig: int, delay_fraction: float,
               train_seconds: float, reference: tuple[list, dict]) -> dict[str, object]:  # fmt: skip
    """Start `verb`, send `sig` after a random logged step, resume with --resume, compare with `reference`."""
    shutil.copytree(fx, work, symlinks=True)
    run = work / out_dir
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmlab", verb, "-c", config],
        cwd=work, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    # Kill in the middle of training: after a random logged step (1 .. last-1), a random few ms into the next one.
    target = 1 + int(delay_fraction * (len(reference[0]) - 2))
    deadline = time.monotonic() + 300
    while proc.poll() is None and _logged_rows(run / "metrics.jsonl") < target and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(delay_fraction * min(train_seconds / max(len(reference[0]), 1), 0.05))
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, sig)
    proc.wait(timeout=120)
    # a kill before the first save has completed leaves nothing to resume: starting again is then right
    nothing_saved_yet = not _has_saved_state(run) or len(_metric_rows(run)) <= 1
    result: dict[str, object] = {"verb": verb, "signal": signal.Signals(sig).name, "killed": killed}
    if not run.exists():
        result["run_folder_gone"] = True
    resume = llmlab([verb, "-c", config, "--resume"], work)
    if resume.returncode != 0 and nothing_saved_yet:  # killed before anything was saved: start again
        resume = llmlab([verb, "-c", config, "overwrite=true"], work)
    rows, weights = _metric_rows(run), _weights(run)
    # a resume may refuse a run whose last save was already the final one: not lost if its state is complete
    lost = (rows, weights) != reference
    result.update({"lost": lost, "resume_exit": resume.returncode})
    if rows != reference[0]:
        result["detail"] = f"metrics differ ({len(rows)} rows vs {len(reference[0])})"
    elif weights != reference[1]:
        differ = sorted(k for k in set(weights) | set(reference[1]) if weights.get(k) != reference[1].get(k))
        result["detail"] = "final weights differ: " + ", ".join(
            f"{k} ({'missing' if k not in weights else 'extra' if k not in reference[1] else 'changed'})"
            for k in differ[:4]
        )
    if resume.returncode != 0:
        result["resume_error"] = resume.stderr.decode(errors="replace").strip().splitlines()[-1:]
        result.setdefault("detail", f"resume failed: {result['resume_error']}")
    shutil.rmtree(work, ignore_errors=True)
    return result


def kill_section(fx: Path, root: Path, kills: int, interrupts: int, jobs: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    trials = []
    for verb, config, out_dir in [("pretrain", "pt_long.yaml", "run_long"), ("finetune", "ft_long.yaml", "ft_long")]:
        ref_dir = root / f"ref-{verb}"
        shutil.copytree(fx, ref_dir, symlinks=True)
        train_seconds = _timed_run([verb, "-c", config], ref_dir, ref_dir / out_dir / "metrics.jsonl")
        reference = (_metric_rows(ref_dir / out_dir), _weights(ref_dir / out_dir))
        log(f"{verb}: uninterrupted run trains for {train_seconds:.1f}s, {len(reference[0])} metric rows")
        sigs = [signal.SIGKILL] * kills + [signal.SIGINT] * interrupts
        for i, sig in enumerate(sigs):
            work = root / f"kill-{verb}-{i:02d}"
            trials.append((verb, config, out_dir, fx, work, sig, rng.random(), train_seconds, reference))
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(lambda t: kill_trial(*t), trials))
    return results


# ----------------------------------------------------------------------------------------------- report


def tables(results: list[dict[str, object]], kills: list[dict[str, object]]) -> str:
    lines = [
        "| verb | bad inputs tried | clean one-line errors | usage errors (typer) | tracebacks | silent | "
        "half-written | other |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    total: Counter[str] = Counter()
    for verb in VERBS:
        rows = [r for r in results if r["verb"] == verb]
        if not rows:
            continue
        c = Counter(str(r["outcome"]) for r in rows)
        total.update(c)
        lines.append(f"| {verb} | {len(rows)} | " + " | ".join(str(c[o]) for o in OUTCOMES) + " |")
    lines.append(f"| **all** | **{len(results)}** | " + " | ".join(f"**{total[o]}**" for o in OUTCOMES) + " |")
    if kills:
        lines += [
            "",
            "| run | hard kills (SIGKILL) | Ctrl-C (SIGINT) | runs lost | finished before the signal |",
            "|---|---:|---:|---:|---:|",
        ]
        for verb in ("pretrain", "finetune"):
            rows = [k for k in kills if k["verb"] == verb and k["killed"]]  # not: finished before the signal
            n_kill = sum(1 for k in rows if k["signal"] == "SIGKILL")
            early = sum(1 for k in kills if k["verb"] == verb and not k["killed"])
            lost = sum(1 for k in rows if k["lost"])
            lines.append(f"| {verb} | {n_kill} | {len(rows) - n_kill} | {lost} | {early} |")
    bad = [r for r in results if r["outcome"] not in ("clean", "usage")]
    if bad:
        lines += ["", "Not clean:", ""]
        lines += [f"- {r['verb']} / {r['name']}: **{r['outcome']}** — {r['detail']}" for r in bad]
    lost = [k for k in kills if k["lost"] and k["killed"]]
    lines += [f"- kill: {k['verb']} {k['signal']}: run lost — {k.get('detail')}" for k in lost]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs per training verb (default 10)")
    parser.add_argument("--interrupts", type=int, default=3, help="Ctrl-Cs per training verb (default 3)")
    parser.add_argument("--only", action="append", help="run only this verb's cases (repeatable)")
    parser.add_argument("--no-cases", action="store_true", help="skip the bad inputs (kill trials only)")
    parser.add_argument("--workdir", type=Path, help="keep the case folders here (default: a temp folder)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    root = args.workdir or Path(tempfile.mkdtemp(prefix="llmlab-reliability-"))
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    fx = root / "fixtures"
    if not fx.exists():
        log(f"building fixtures in {fx}")
        build_fixtures(fx)
    cases = [c for c in all_cases() if (not args.only or c.verb in args.only) and not args.no_cases]
    note = " (as root: OS stand-ins for permission errors)" if ROOT else ""
    log(f"{len(cases)} bad inputs, {args.jobs} at a time{note}")
    cases_root = root / "cases"
    shutil.rmtree(cases_root, ignore_errors=True)
    cases_root.mkdir()
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_case, case, fx, cases_root, i) for i, case in enumerate(cases)]
        results = []
        for case, future in zip(cases, futures, strict=True):
            result = future.result()
            results.append(result)
            log(f"  [{result['outcome']:>12}] {case.verb} / {case.name}: {str(result['detail'])[:110]}")
    kills = []
    if args.kills or args.interrupts:
        kills = kill_section(fx, root / "kills", args.kills, args.interrupts, args.jobs, args.seed)
    print(tables(results, kills))
    summary = {
        "bad_inputs": len(results),
        "outcomes": dict(Counter(str(r["outcome"]) for r in results)),
        "per_verb": {
            verb: dict(Counter(str(r["outcome"]) for r in results if r["verb"] == verb))
            for verb in VERBS
            if any(r["verb"] == verb for r in results)
        },
        "kills": sum(1 for k in kills if k["killed"]),
        "runs_lost": sum(1 for k in kills if k["lost"] and k["killed"]),
        "as_root": ROOT,
        "seconds": round(time.perf_counter() - start, 1),
        "not_clean": [
            {k: r[k] for k in ("verb", "name", "outcome", "detail")}
            for r in results
            if r["outcome"] not in ("clean", "usage")
        ],
        "kill_trials": kills,
    }
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    main()
