"""`llmlab eval perplexity`: score a held-out text file with a checkpoint and print the figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmlab.eval import evaluate_perplexity
from llmlab.hub import load_for_inference
from llmlab.nn.device import resolve_device
from llmlab.nn.virtual import context_length


def read_text_file(file: Path) -> str:
    """The UTF-8 text of `file`; FileNotFoundError/ValueError with one line naming it."""
    if not file.is_file():
        raise FileNotFoundError(f"text file not found: {file}; pass a held-out UTF-8 text file with --file")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{file} is not UTF-8 text (byte {e.start}); convert it to UTF-8") from None


def perplexity(
    checkpoint: Path,
    file: Path,
    *,
    stride: int | None = None,
    batch_size: int = 8,
    add_bos: bool = False,
    device: str = "cpu",
    as_json: bool = False,
    keep_quantized: bool = False,
) -> dict[str, Any]:
    """Sliding-window perplexity, bits per character and bits per byte of `file`, printed; returns the figures."""
    torch_device = resolve_device(device)
    text = read_text_file(file)
    loaded = load_for_inference(checkpoint, device=torch_device, quantized=keep_quantized)
    model, tokenizer = loaded.model, loaded.tokenizer
    context = context_length(model)
    if stride is not None and stride > context:
        raise ValueError(f"--stride {stride} is larger than the model's context {context}; lower it")
    result = evaluate_perplexity(model, tokenizer, text, stride=stride, batch_size=batch_size, add_bos=add_bos)
    if as_json:
        print(json.dumps(result))
        return result
    print(f"file            {file} ({result['characters']:,} characters, {result['bytes']:,} bytes scored)")
    print(f"context/stride  {result['block_size']} / {result['stride']} tokens")
    print(f"tokens scored   {result['tokens_scored']:,}")
    print(f"loss            {result['loss']:.4f} nats/token")
    print(f"perplexity      {result['perplexity']:.3f}")
    print(f"bits per char   {result['bits_per_char']:.4f}")
    print(f"bits per byte   {result['bits_per_byte']:.4f}")
    return result
