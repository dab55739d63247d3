"""Serving (layer 7, beside recipes): a continuous-batching decode engine over KV-cache slots.

`engine.py` holds `Engine` (submit / step / cancel / run_until_done, per-request sampling and stopping) and
`slots.py` `SlotCache` (one shared `KVCache` whose rows are slots with their own lengths, a shared write head).
The OpenAI-compatible HTTP server of issue 11 is built on `Engine`.
"""

from llmlab.serve.engine import Engine, TokenEvent, check_engine_model
from llmlab.serve.slots import SlotCache

__all__ = ["Engine", "SlotCache", "TokenEvent", "check_engine_model"]
