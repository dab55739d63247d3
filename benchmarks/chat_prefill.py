"""Time to first token on the 3rd turn of a SmolLM2 chat: KV-cache reuse between turns vs re-prefilling.

`ChatSession(reuse_cache=True)` keeps the KV cache between turns and prefills only the part of the new prompt
that is not cached (the end of the last reply, the new user message, the assistant header);
`reuse_cache=False` runs the whole conversation through the model again every turn. Both sessions are greedy,
so their replies must be identical (checked and reported as `same_replies`).

Measured on the 3rd turn: `ttft_s` (from `send()` to the first generated token: rendering + tokenizing the
prompt, the prefill and the first sampled token; `ChatSession.last_ttft_s`) and `prefill_tokens` (prompt
tokens run through the model). Each round runs both sessions (turns 1-3), the order alternating every round;
medians over rounds are reported.

    python benchmarks/chat_prefill.py --threads 1 --rounds 3 --max-new-tokens 48

Prints one line per round, then ONE JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys

import torch

from llmlab.generate.chat import ChatSession
from llmlab.hub import load_for_inference

SYSTEM = "You are a helpful assistant. Answer in two or three sentences."
MESSAGES = [
    "What is the capital of France, and what is it famous for?",
    "And what about Germany's capital?",
    "Which of the two cities is older?",
]


def third_turn(model, tokenizer, template: str, reuse: bool, max_new_tokens: int) -> dict:  # noqa: ANN001
    """Run the three turns in a fresh session; return the 3rd turn's figures and all replies."""
    session = ChatSession(
        model,
        tokenizer,
        template=template,
        system=SYSTEM,
        temperature=0.0,
        max_new_tokens=max_new_tokens,
        reuse_cache=reuse,
    )
    replies = [session.send(m) for m in MESSAGES]
    return {
        "ttft_s": session.last_ttft_s,
        "prompt_tokens": len(session.last_prompt_ids),
        "prefill_tokens": session.last_prefill_tokens,
        "reused_tokens": session.last_reused_tokens,
        "replies": replies,
        "reply_ids": session.last_reply_ids,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (each runs both sessions)")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="longest reply per turn")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_for_inference(None, device=args.device)  # SmolLM2-135M-Instruct, float32
    model, tok, template = loaded.model, loaded.tokenizer, loaded.chat_template
    load_before = os.getloadavg()

    third_turn(model, tok, template, True, 4)  # warm-up (untimed)
    results: dict[str, list[dict]] = {"reuse": [], "re_prefill": []}
    for r in range(args.rounds):
        order = [("reuse", True), ("re_prefill", False)]
        for name, reuse in order if r % 2 == 0 else order[::-1]:
            res = third_turn(model, tok, template, reuse, args.max_new_tokens)
            results[name].append(res)
            print(
                f"round {r} {name:10s}: turn-3 prompt {res['prompt_tokens']} tokens, prefilled "
                f"{res['prefill_tokens']}, time to first token {res['ttft_s'] * 1000:.0f} ms",
                file=sys.stderr,
                flush=True,
            )

    def summary(runs: list[dict]) -> dict:
        ttft = [run["ttft_s"] for run in runs]
        return {
            "ttft_s_median": round(statistics.median(ttft), 4),
            "ttft_s_best": round(min(ttft), 4),
            "prompt_tokens": runs[0]["prompt_tokens"],
            "prefill_tokens": runs[0]["prefill_tokens"],
            "reused_tokens": runs[0]["reused_tokens"],
        }

    reuse, full = summary(results["reuse"]), summary(results["re_prefill"])
    same = all(
        a["replies"] == b["replies"] and a["reply_ids"] == b["reply_ids"]
        for a, b in zip(results["reuse"], results["re_prefill"], strict=True)
    )
    record = {
        "benchmark": "chat_prefill",
        "model": loaded.source,
        "device": args.device,
        "threads": args.threads,
        "rounds": args.rounds,
        "max_new_tokens": args.max_new_tokens,
        "turn3": {"reuse": reuse, "re_prefill": full},
        "ttft_speedup": round(full["ttft_s_median"] / reuse["ttft_s_median"], 2),
        "same_replies": same,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    print(
        f"3rd turn ({full['prompt_tokens']} prompt tokens): re-prefill {full['ttft_s_median'] * 1000:.0f} ms, "
        f"reuse {reuse['ttft_s_median'] * 1000:.0f} ms ({reuse['prefill_tokens']} tokens prefilled)"
    )
    print(json.dumps(record))


if __name__ == "__main__":
    main()
