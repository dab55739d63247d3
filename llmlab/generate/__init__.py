"""Text generation: a decoding loop with a KV cache, logits processors, samplers and a streaming detokenizer.

    ids = torch.tensor([tokenizer.encode("ROMEO:")])
    out = generate(model, ids, max_new_tokens=100, temperature=0.8, top_k=200, seed=1)
    print(tokenizer.decode(out[0].tolist()))

Decoding is split into three extensible parts: logits processors (`processors.py`), a sampler
(`samplers.py`) and the loop (`loop.py`); `streamer.py` turns token ids into clean text deltas.
"""

from llmlab.generate.checkpoint import load_model_and_tokenizer, resolve_checkpoint_dir
from llmlab.generate.loop import generate, stream_generate
from llmlab.generate.processors import (
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureProcessor,
    TopKProcessor,
    TopPProcessor,
    build_processors,
)
from llmlab.generate.samplers import GreedySampler, MultinomialSampler, Sampler, make_generator
from llmlab.generate.streamer import TextStreamer, stream_text

__all__ = [
    "GreedySampler",
    "LogitsProcessor",
    "LogitsProcessorList",
    "MultinomialSampler",
    "Sampler",
    "TemperatureProcessor",
    "TextStreamer",
    "TopKProcessor",
    "TopPProcessor",
    "build_processors",
    "generate",
    "load_model_and_tokenizer",
    "make_generator",
    "resolve_checkpoint_dir",
    "stream_generate",
    "stream_text",
]
