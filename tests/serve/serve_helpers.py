"""Test support for `llmlab serve`: a tiny model saved as a folder (BPE tokenizer + ChatML template), and a live
uvicorn server on a free loopback port in a background thread.

    folder = save_tiny_model(tmp_path)              # what `llmlab serve --model folder` loads
    with live_server(folder, max_batch=4) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x")
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tiny_models import spread, tiny_llama

from llmlab.recipes.serve import ServeRequest, build_state
from llmlab.serve.app import create_app
from llmlab.tokenizers import train_tokenizer_from_iterator
from llmlab.tokenizers.chat import CHATML

CORPUS = ["Hello there, how are you? I am fine. What is new today? Nothing much. 你好世界 {\"a\": 1}\n" * 30]
SPECIALS = {"pad": "<|pad|>", "bos": "<|im_start|>", "eos": "<|im_end|>", "unk": "<|endoftext|>"}
CONTEXT = 128


def save_tiny_model(folder: Path, seed: int = 0) -> Path:
    """A random tiny Llama (its logits spread so that greedy replies vary) with a BPE tokenizer and ChatML."""
    tokenizer = train_tokenizer_from_iterator("bpe", CORPUS, vocab_size=300, special_tokens=SPECIALS)
    model = tiny_llama(seed, vocab_size=tokenizer.vocab_size, max_position_embeddings=CONTEXT, tie_word_embeddings=False)
    spread(model, seed=seed)  # larger weights than the init: greedy replies vary with the prompt
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save(folder)
    (folder / "chat_template.jinja").write_text(CHATML, encoding="utf-8")
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    state: Any
    server: Any


@contextlib.contextmanager
def live_server(model: Path | None, **options: Any) -> Iterator[LiveServer]:
    """Serve `model` (a folder; None: SmolLM2) with `ServeRequest` options on a free loopback port."""
    import uvicorn

    request = ServeRequest(model=model, port=free_port(), **options).validate()
    state = build_state(request)
    config = uvicorn.Config(create_app(state), host="127.0.0.1", port=request.port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{request.port}", state, server)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        state.runner.close()
