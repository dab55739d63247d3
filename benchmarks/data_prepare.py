"""Peak memory and throughput of `llmlab data prepare` on one large single-document text file.

    python benchmarks/data_prepare.py              # a generated 200 MB file (issue 9: peak RSS below 1.5 GB)
    python benchmarks/data_prepare.py --mb 50 --keep

The file is generated deterministically (seeded): paragraphs of English-like sentences (a fixed vocabulary of
common words plus syllable-made words), about one paragraph in ten Chinese, lines wrapped at ~80 characters,
paragraphs separated by blank lines, and no further document boundary — the whole file is one document.
`llmlab data prepare --source FILE --out OUT` then runs with the default settings (every cleaning step on,
a 4,096-id byte-level BPE trained on the corpus) in a subprocess, and `bench_utils.PeakRSS` samples the
resident memory of that process every 2 ms (`peak_rss_mb`); the kernel's own high-water mark of the child
(`ru_maxrss` from `wait4`) is reported beside it as a check.

The last line printed is one JSON object: input_mb, peak_rss_mb, maxrss_mb, seconds, mb_per_s, tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_utils import PeakRSS, log

REPO = Path(__file__).resolve().parents[1]
COMMON = (
    "the of and to in a is that it was for on are as with his they at be this from have or by one had not but "
    "what all were when we there can an your which their said if do will each about how up out them then she "
    "many some so these would other into has more her two like him see time could no make than first been its "
    "who now people my made over did down only way find use may water long little very after words called just "
    "where most know get through back much before go good new write our used me man too any day same right look "
    "think also around another came come work three word must because does part even place well such here take "
    "why things help put years different away again off went old number great tell men say small every found"
).split()
SYLLABLES = "ka lo mi ren tor bel sa vin dra qu est ion ly ment ful ar en el or un re pro con ter mal ish".split()
CHINESE = (
    "今天的天气非常好 我们一起去公园散步 孩子们在草地上放风筝 老人们坐在长椅上聊天 春天来了 花都开了 "
    "这本书讲的是一个古老的故事 他每天早上六点起床 学习语言需要耐心 城市的夜晚灯火通明 火车缓缓驶进车站 "
    "我们应该保护环境 这个问题很有意思 她在图书馆看书 朋友们聚在一起吃饭 山上的风景很美"
).split()
ZH_PUNCT = ("，", "，", "；", "：")
ZH_END = ("。", "！", "？")


def _vocabulary(rng: random.Random, n: int = 3000) -> list[str]:
    made = {"".join(rng.choices(SYLLABLES, k=rng.randint(2, 4))) for _ in range(n)}
    return COMMON + sorted(made)


def _wrap(text: str, width: int = 80) -> str:
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join([*lines, line])


def _paragraph(rng: random.Random, vocab: list[str]) -> str:
    if rng.random() < 0.1:  # Chinese: phrases joined by full-width punctuation
        sentences = [
            ZH_PUNCT[rng.randrange(4)].join(rng.choices(CHINESE, k=rng.randint(2, 5))) + ZH_END[rng.randrange(3)]
            for _ in range(rng.randint(2, 5))
        ]
        return "".join(sentences)
    sentences = []
    for _ in range(rng.randint(3, 7)):
        words = rng.choices(vocab, k=rng.randint(8, 22))
        sentences.append(" ".join(words).capitalize() + rng.choice(".....?!"))
    return _wrap(" ".join(sentences))


def generate(path: Path, megabytes: float, seed: int = 0) -> int:
    """Write the corpus (see the module docstring) to `path`; returns its size in bytes."""
    rng = random.Random(seed)
    vocab = _vocabulary(rng)
    target = int(megabytes * 2**20)
    size = 0
    with path.open("w", encoding="utf-8") as f:
        while size < target:
            block = "\n\n".join(_paragraph(rng, vocab) for _ in range(200)) + "\n\n"
            data = block.encode("utf-8")
            f.write(block)
            size += len(data)
    return size


def run_prepare(source: Path, out: Path) -> dict:
    """Run `llmlab data prepare` with the default settings in a subprocess under the RSS sampler."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "llmlab", "data", "prepare", "--source", str(source), "--out", str(out)]
    logfile = out.with_name("prepare.log")
    t0 = time.perf_counter()
    with logfile.open("w") as output:
        proc = subprocess.Popen(cmd, env=env, stdout=output, stderr=subprocess.STDOUT)
        with PeakRSS(proc.pid) as mem:
            _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped by wait4 above
    if code != 0:
        raise SystemExit(f"llmlab data prepare failed ({code}):\n{logfile.read_text()}")
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    return {
        "peak_rss_mb": round(mem.peak_mb, 1),
        "maxrss_mb": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
        "seconds": round(seconds, 1),
        "tokens": meta["train_tokens"] + meta["val_tokens"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200.0, help="size of the generated file in MiB (200)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to put the file and the output")
    parser.add_argument("--keep", action="store_true", help="keep the generated file and the prepared corpus")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="llmlab-bench-prepare-"))
    work.mkdir(parents=True, exist_ok=True)
    source, out = work / f"single-doc-{args.mb:g}mb.txt", work / "prepared"
    try:
        if not source.exists():
            log(f"generating {source} ({args.mb:g} MiB)")
            generate(source, args.mb)
        shutil.rmtree(out, ignore_errors=True)
        input_mb = source.stat().st_size / 2**20
        log(f"llmlab data prepare --source {source} --out {out}")
        result = run_prepare(source, out)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result = {
        "input_mb": round(input_mb, 1),
        **result,
        "mb_per_s": round(input_mb / result["seconds"], 2),
        "target_peak_rss_mb": 1536,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
