"""Serving (layer 7, beside recipes): `llmlab serve`, an OpenAI-compatible server with continuous batching.

engine.py / slots.py   `Engine` (submit / step / cancel; per-request sampling, processors, logprobs) over
                       `SlotCache` (one shared KVCache whose rows are slots with their own lengths)
runner.py              `EngineRunner`: the engine on a background thread, streamed to asyncio; `QueueFull`
choices.py             `ServeState`, token events -> text pieces, `complete_text`, `count_chat_tokens`
app.py                 `create_app(state)`: /health, /v1/models, the routes below, /api (extra routers), /
openai_*.py            /v1/chat/completions and /v1/completions in OpenAI's shapes; errors.py: error bodies
structured.py          response_format (json_object / json_schema) as an xgrammar token-mask processor
memory.py / conversations.py   the SQLite conversation store and its /api/conversations routes
"""

from llmlab.serve.engine import Engine, TokenEvent, check_engine_model
from llmlab.serve.runner import EngineRunner, QueueFull
from llmlab.serve.slots import SlotCache

__all__ = ["Engine", "EngineRunner", "QueueFull", "SlotCache", "TokenEvent", "check_engine_model"]
