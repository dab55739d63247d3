"""Text generation: a decoding loop with a KV cache, logits processors, samplers and a streaming detokenizer.

    ids = torch.tensor([tokenizer.encode("ROMEO:")])
    out = generate(model, ids, sampling=SamplingConfig(max_new_tokens=100, temperature=0.8, top_k=200, seed=1))
    print(tokenizer.decode(out[0].tolist()))

Decoding is split into extensible parts: logits processors (`processors.py`, `penalties.py`), a sampler
(`samplers.py`), stopping criteria (`stopping.py`) and the loop (`loop.py`); `streamer.py` turns token ids
into clean text deltas and `text.py` wraps it all text-in/text-out. `llmlab.config.sampling` holds `SamplingConfig`, the
one definition of the decoding parameters every entry point takes; `chat.py` holds `ChatSession`
(multi-turn chat with KV-cache reuse). Other strategies: `beam.py` (beam
search, equal to `transformers`), `batch.py` (left-padded batches), `speculative.py` (draft model or
prompt lookup, identical to greedy), `seq2seq.py` (T5/BART: the encoder once, cached self- and
cross-attention keys/values; greedy, sampling and beam search).
"""

from llmlab.config.sampling import SamplingConfig
from llmlab.generate.batch import generate_batch, left_pad
from llmlab.generate.beam import BeamSearchOutput, beam_search
from llmlab.generate.chat import ChatSession
from llmlab.generate.loop import generate, stream_generate
from llmlab.generate.penalties import FrequencyPresencePenaltyProcessor, RepetitionPenaltyProcessor, build_penalties
from llmlab.generate.processors import (
    LogitsProcessor,
    LogitsProcessorList,
    MinPProcessor,
    TemperatureProcessor,
    TopKProcessor,
    TopPProcessor,
    build_processors,
)
from llmlab.generate.samplers import GreedySampler, MultinomialSampler, Sampler, make_generator
from llmlab.generate.seq2seq import seq2seq_generate
from llmlab.generate.speculative import SpeculativeStats, prompt_lookup_candidates, speculative_generate
from llmlab.generate.stopping import StopOnTokens, StoppingCriteria, StopStringHoldback, StopStrings
from llmlab.generate.streamer import TextStreamer, stream_text
from llmlab.generate.text import generate_text, stream_generate_text

__all__ = [
    "BeamSearchOutput",
    "ChatSession",
    "FrequencyPresencePenaltyProcessor",
    "GreedySampler",
    "LogitsProcessor",
    "LogitsProcessorList",
    "MinPProcessor",
    "MultinomialSampler",
    "RepetitionPenaltyProcessor",
    "Sampler",
    "SamplingConfig",
    "SpeculativeStats",
    "StopOnTokens",
    "StopStringHoldback",
    "StopStrings",
    "StoppingCriteria",
    "TemperatureProcessor",
    "TextStreamer",
    "TopKProcessor",
    "TopPProcessor",
    "beam_search",
    "build_penalties",
    "build_processors",
    "generate",
    "generate_batch",
    "generate_text",
    "left_pad",
    "make_generator",
    "prompt_lookup_candidates",
    "seq2seq_generate",
    "speculative_generate",
    "stream_generate",
    "stream_generate_text",
    "stream_text",
]
