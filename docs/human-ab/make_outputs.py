"""The three systems' outputs for the recorded A/B session in docs/evaluation.md (run from the repository root):

    python docs/human-ab/make_outputs.py runs/quickstart docs/human-ab/out

smollm2-greedy: the packaged SmolLM2-135M-Instruct, chat template, greedy, 80 new tokens;
smollm2-sampled: the same model, temperature 0.9, top-p 0.95, seed 0;
quickstart: the `llmlab quickstart` GPT, the prompt as plain text (it has no chat template), temperature 0.8,
top-p 0.95, seed 0, 60 new tokens. One {"prompt", "output"} JSONL file per system.
"""

import json
import sys
from pathlib import Path

from llmlab.config.sampling import SamplingConfig
from llmlab.hub import load_for_inference
from llmlab.recipes.eval_human import generate_answer

HERE = Path(__file__).resolve().parent
SYSTEMS = [
    ("smollm2-greedy", None, "auto", SamplingConfig(max_new_tokens=80, temperature=0.0)),
    ("smollm2-sampled", None, "auto", SamplingConfig(max_new_tokens=80, temperature=0.9, top_p=0.95, seed=0)),
    ("quickstart", "QUICKSTART", None, SamplingConfig(max_new_tokens=60, temperature=0.8, top_p=0.95, seed=0)),
]

quickstart, out = sys.argv[1], Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
prompts = (HERE / "prompts.txt").read_text(encoding="utf-8").splitlines()
for name, path, template, sampling in SYSTEMS:
    loaded = load_for_inference(quickstart if path == "QUICKSTART" else path, "cpu")
    with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
        for prompt in prompts:
            answer = generate_answer(loaded, prompt, sampling, template)
            f.write(json.dumps({"prompt": prompt, "output": answer}, ensure_ascii=False) + "\n")
