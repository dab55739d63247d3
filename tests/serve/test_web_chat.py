"""The web chat page (llmlab/serve/static/index.html) end to end in headless Chromium (Playwright driving Debian's
/usr/bin/chromium) against a live server on a loopback port: a message typed in the page streams back, Stop
cancels the stream on the server, conversations are listed/reopened/deleted, Markdown is rendered and HTML in
model output stays text, the API key is sent as a Bearer token, the zh/en toggle, and the page loads nothing
from another origin.

Two servers: a small FastAPI double implementing the endpoints the page talks to (the conversation store's
/api/conversations* and the OpenAI /v1/chat/completions stream) whose replies the test controls (Markdown, HTML,
a long reply to stop), and the real `llmlab serve` app (`create_app` + EngineRunner + the `--db` conversation
store) around a tiny model: the page shows what the engine generated and SQLite stored, a long conversation's
model-written summary, the greedy reply of the OpenAI route, and Stop leaves the partial reply stored.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, require_chromium

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

from fastapi import Depends, FastAPI, Request  # noqa: E402
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse  # noqa: E402

PAGE = Path(__file__).resolve().parents[2] / "llmlab" / "serve" / "static" / "index.html"
KEY = "sk-test-web"
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
MARKDOWN_REPLY = (
    "Echo: **bold** and `inline`, [bad](javascript:alert(1)) [docs](https://example.org/x)\n\n"
    f"- one\n- two\n\n```python\nprint('hi')\n```\n{HOSTILE}"
)
LONG_CHUNKS = 4800  # the "long" reply: one word every 25 ms (2 min), so Stop lands mid-stream even on a loaded CI

pytestmark = pytest.mark.slow


def _error(status: int, message: str, kind: str, code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}}, status)


class Unauthorized(Exception):
    """The request lacks the double's API key."""


class FakeServer:
    """Records what the page sends; answers like the real server (conversation store optional)."""

    def __init__(self, *, store: bool, api_key: str | None) -> None:
        self.store, self.api_key = store, api_key
        self.conversations: dict[int, dict[str, Any]] = {}
        self.next_id = 1
        self.requests: list[dict[str, Any]] = []  # bodies of the message / completion POSTs
        self.cancelled = threading.Event()
        self.app = self._build()

    def _authorized(self, request: Request) -> bool:
        return self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}"

    async def _reply(
        self, request: Request, text: str, done: dict[str, Any] | None, openai: bool
    ) -> AsyncIterator[str]:
        """SSE events of a reply streamed a few characters at a time; marks `cancelled` when the client left."""
        if text == "long":
            pieces = [f"word{i} " for i in range(LONG_CHUNKS)]
        else:
            reply = MARKDOWN_REPLY if text.startswith("hello") else f"Reply to {text}."
            pieces = [reply[i : i + 4] for i in range(0, len(reply), 4)]
        finished = False
        try:
            for piece in pieces:
                await asyncio.sleep(0.025)
                if await request.is_disconnected():
                    return
                event = {"choices": [{"index": 0, "delta": {"content": piece}}]} if openai else {"delta": piece}
                yield f"data: {json.dumps(event)}\n\n"
            yield "data: [DONE]\n\n" if openai else f"data: {json.dumps(done)}\n\n"
            finished = True
        finally:
            if not finished:
                self.cancelled.set()
            elif done is not None:
                conversation = self.conversations.get(done["conversation_id"])
                if conversation is not None:
                    conversation["messages"].append({"role": "assistant", "content": "".join(pieces)})

    def _build(self) -> FastAPI:
        def require_key(request: Request) -> None:
            if request.url.path.startswith(("/v1", "/api")) and not self._authorized(request):
                raise Unauthorized

        app = FastAPI(dependencies=[Depends(require_key)])

        @app.exception_handler(Unauthorized)
        async def unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")

        @app.get("/")
        async def index() -> FileResponse:
            return FileResponse(PAGE, media_type="text/html")

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": "tiny", "object": "model", "owned_by": "llmlab"}]}

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> StreamingResponse:
            body = await request.json()
            self.requests.append(body)
            stream = self._reply(request, body["messages"][-1]["content"], None, openai=True)
            return StreamingResponse(stream, media_type="text/event-stream")

        if self.store:
            self._add_store_routes(app)
        return app

    def _add_store_routes(self, app: FastAPI) -> None:
        def summary_of(conversation: dict[str, Any]) -> dict[str, Any]:
            return {key: conversation[key] for key in ("id", "title", "system", "updated_at")}

        @app.get("/api/conversations")
        async def list_conversations() -> dict[str, Any]:
            ordered = sorted(self.conversations.values(), key=lambda c: c["updated_at"], reverse=True)
            return {"conversations": [summary_of(c) for c in ordered]}

        @app.post("/api/conversations")
        async def create(request: Request) -> dict[str, Any]:
            body = await request.json()
            conversation = {
                "id": self.next_id,
                "title": body.get("title"),
                "system": body.get("system"),
                "updated_at": time.time(),
                "messages": [],
                "summary": None,
            }
            self.conversations[self.next_id] = conversation
            self.next_id += 1
            return summary_of(conversation)

        @app.get("/api/conversations/{conversation_id}")
        async def get(conversation_id: int) -> Any:
            if conversation_id not in self.conversations:
                return _error(404, f"no conversation {conversation_id}", "not_found_error")
            return self.conversations[conversation_id]

        @app.delete("/api/conversations/{conversation_id}")
        async def delete(conversation_id: int) -> Any:
            if self.conversations.pop(conversation_id, None) is None:
                return _error(404, f"no conversation {conversation_id}", "not_found_error")
            return {"deleted": True}

        @app.post("/api/conversations/{conversation_id}/messages")
        async def message(conversation_id: int, request: Request) -> Any:
            conversation = self.conversations.get(conversation_id)
            if conversation is None:
                return _error(404, f"no conversation {conversation_id}", "not_found_error")
            body = await request.json()
            self.requests.append(body)
            conversation["messages"].append({"role": "user", "content": body["content"]})
            conversation["updated_at"] = time.time()
            if len(conversation["messages"]) > 2:  # stands in for the model's summary of the oldest turns
                conversation["summary"] = {"text": f"Summary: the user said {conversation['messages'][0]['content']}"}
            done = {
                "done": True,
                "message_id": len(conversation["messages"]) + 1,
                "summary": conversation["summary"],
                "conversation_id": conversation_id,
            }
            return StreamingResponse(
                self._reply(request, body["content"], done, openai=False), media_type="text/event-stream"
            )


@contextmanager
def live(app: FastAPI) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port in a thread; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def browser_page(url: str) -> Iterator[Any]:
    """A Chromium page at `url` that accepts confirm() dialogs and fails on requests to any other origin."""
    require_chromium()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            foreign: list[str] = []
            page.on("request", lambda request: None if request.url.startswith(url) else foreign.append(request.url))
            page.on("dialog", lambda dialog: dialog.accept())
            page.goto(url)
            yield page
            assert foreign == [], f"the page loaded from other origins: {foreign}"
        finally:
            browser.close()


def _assistant_text(page: Any) -> str:
    return page.locator("#messages .message.assistant .content").last.text_content() or ""


def _send(page: Any, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")


def _enter_key(page: Any) -> None:
    """Type the API key once the first, keyless listing has failed; wait until the page lists conversations."""
    page.wait_for_function("() => document.getElementById('error').textContent.includes('API key')")
    page.fill("#api-key", KEY)
    page.dispatch_event("#api-key", "change")
    page.wait_for_function(
        "() => document.getElementById('mode').textContent !== ''"
        " && document.getElementById('error').textContent === ''"
    )


def _wait_reply_done(page: Any) -> None:
    page.wait_for_function(
        "() => !document.getElementById('send').disabled && "
        "document.querySelectorAll('#messages .message.assistant').length > 0"
    )


@pytest.fixture
def store_server() -> Iterator[tuple[FakeServer, str]]:
    fake = FakeServer(store=True, api_key=KEY)
    with live(fake.app) as url:
        yield fake, url


def test_chat_streams_renders_markdown_safely_and_keeps_conversations(store_server: tuple[FakeServer, str]) -> None:
    fake, url = store_server
    with browser_page(url) as page:
        _enter_key(page)
        page.fill("#system", "Be brief.")
        page.fill("#temperature", "0.2")
        _send(page, "hello <b>there</b>")
        page.wait_for_function("() => document.getElementById('stop').disabled === false")  # streaming
        _wait_reply_done(page)

        assert fake.requests[-1] == {"content": "hello <b>there</b>", "system": "Be brief.", "temperature": 0.2}
        user = page.locator("#messages .message.user .content").last
        assert user.text_content() == "hello <b>there</b>" and user.locator("b").count() == 0
        reply = page.locator("#messages .message.assistant .content").last
        assert reply.locator("strong").text_content() == "bold"
        assert reply.locator("p > code").text_content() == "inline"
        assert reply.locator("ul > li").all_text_contents() == ["one", "two"]
        links = reply.locator("a")  # only http(s)/mailto links become anchors; javascript: stays text
        assert links.count() == 1 and links.get_attribute("href") == "https://example.org/x"
        assert "[bad](javascript:alert(1))" in _assistant_text(page)
        assert reply.locator("pre > code").text_content() == "print('hi')"
        assert reply.locator("pre > code").get_attribute("data-lang") == "python"
        # the model's HTML is shown as text: no element made from it, nothing ran
        assert HOSTILE in _assistant_text(page)
        assert page.locator("#messages script, #messages img").count() == 0
        assert page.evaluate("() => window.__pwned") is None

        titles = page.locator("#conversations li .open")
        assert titles.all_text_contents() == ["hello <b>there</b>"]
        page.click("#new-chat")
        assert page.locator("#messages .message").count() == 0
        _send(page, "second chat")
        _wait_reply_done(page)
        assert _assistant_text(page) == "Reply to second chat."
        page.wait_for_function("() => document.querySelectorAll('#conversations li').length === 2")
        _send(page, "and again")  # the server summarises the first turn: the page shows the summary
        _wait_reply_done(page)
        page.wait_for_selector("#summary:not(.hidden)")
        assert page.text_content("#summary-text") == "Summary: the user said second chat"

        page.locator("#conversations li .open", has_text="hello").click()  # reopen the first conversation
        page.wait_for_function("() => document.querySelectorAll('#messages .message').length === 2")
        assert page.locator("#messages .message.user .content").text_content() == "hello <b>there</b>"
        assert page.locator("#messages pre > code").text_content() == "print('hi')"
        assert page.is_hidden("#summary") and page.input_value("#system") == "Be brief."

        first_id = min(fake.conversations)
        page.locator(f"#conversations li[data-id='{first_id}'] .delete").click()
        page.wait_for_function("() => document.querySelectorAll('#conversations li').length === 1")
        assert first_id not in fake.conversations and page.locator("#messages .message").count() == 0


def test_stop_cancels_the_stream_on_the_server(store_server: tuple[FakeServer, str]) -> None:
    fake, url = store_server
    with browser_page(url) as page:
        _enter_key(page)
        _send(page, "long")
        # streamed text arrives while the reply is still running (Stop enabled, Send disabled)
        page.wait_for_function(
            "() => { const m = document.querySelector('#messages .message.assistant .content');"
            " return m && m.textContent.includes('word3') && !document.getElementById('stop').disabled; }"
        )
        page.keyboard.press("Escape")  # the keyboard's Stop
        page.wait_for_selector("#messages .message.assistant .note")
        assert fake.cancelled.wait(timeout=10), "the server never saw the disconnect"
        shown = _assistant_text(page)
        time.sleep(0.5)
        assert _assistant_text(page) == shown and f"word{LONG_CHUNKS - 1}" not in shown
        assert page.is_enabled("#send") and page.is_disabled("#stop")


def test_without_a_conversation_store_the_page_uses_openai_streaming_and_switches_language() -> None:
    fake = FakeServer(store=False, api_key=None)
    with live(fake.app) as url, browser_page(url) as page:
        page.wait_for_function("() => document.getElementById('mode').textContent.includes('this page')")
        page.fill("#system", "You are terse.")
        page.fill("#max-tokens", "12")
        _send(page, "first")
        _wait_reply_done(page)
        assert _assistant_text(page) == "Reply to first."
        _send(page, "second")
        page.wait_for_function("() => document.querySelectorAll('#messages .message.assistant').length === 2")
        _wait_reply_done(page)
        request = fake.requests[-1]
        assert request["stream"] is True and request["model"] == "tiny" and request["max_tokens"] == 12
        assert request["messages"] == [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "Reply to first."},
            {"role": "user", "content": "second"},
        ]
        assert page.locator("#conversations li").count() == 1

        assert page.text_content("#send") == "Send"
        page.click("#lang")
        assert page.text_content("#send") == "发送" and page.text_content("#new-chat") == "新对话"
        assert page.evaluate("() => document.documentElement.lang") == "zh-CN"
        page.reload()
        assert page.text_content("#send") == "发送"  # the choice is remembered
        page.click("#lang")
        assert page.text_content("#send") == "Send"


# ------------------------------------------------------------------------------------- the real `llmlab serve` app
# A tiny random Llama with a BPE tokenizer and ChatML (tests/serve/serve_helpers.py) behind the real `create_app`,
# EngineRunner and conversation store: what the page shows is what the engine generated and SQLite stored.
REPLY_TOKENS = 24
CHAT_CONTEXT = 384  # room for the memory's summarisation instruction (~160 tokens with this tokenizer) + turns


def save_chat_model(folder: Path) -> Path:
    """serve_helpers' tiny Llama + BPE + ChatML, with a context long enough for conversations to be summarised."""
    import torch
    from serve_helpers import CORPUS, SPECIALS
    from tiny_models import tiny_llama

    from llmlab.tokenizers import train_tokenizer_from_iterator
    from llmlab.tokenizers.chat import CHATML

    tokenizer = train_tokenizer_from_iterator("bpe", CORPUS, vocab_size=300, special_tokens=SPECIALS)
    model = tiny_llama(
        0, vocab_size=tokenizer.vocab_size, max_position_embeddings=CHAT_CONTEXT, tie_word_embeddings=False
    )
    with torch.no_grad():
        model.lm_head.weight.mul_(20)  # logits of a few units: replies are not one repeated token
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save(folder)
    (folder / "chat_template.jinja").write_text(CHATML, encoding="utf-8")
    return folder


@contextmanager
def real_server(
    tmp_path: Path, *, api_key: str | None = None, store: bool = True, delay: float = 0.0
) -> Iterator[tuple[str, Any, Any]]:
    """(URL, ServeState, ConversationStore or None) of the real app serving a tiny model on a loopback port.

    With `store`, the conversation routes are `llmlab serve --db`'s own (`ServeRequest.db`; replies capped at
    REPLY_TOKENS by --max-tokens-cap) and the yielded store is a second connection to the same SQLite file. With
    `delay` (seconds between text deltas: a slow model, so Stop lands mid-reply) the same router is built here
    around a throttled `complete_text`.
    """
    from llmlab.recipes.serve import ServeRequest, build_state
    from llmlab.serve.app import create_app
    from llmlab.serve.choices import complete_text, count_chat_tokens
    from llmlab.serve.conversations import conversations_router
    from llmlab.serve.memory import ConversationStore

    folder = save_chat_model(tmp_path / "model")
    db = tmp_path / "chat.sqlite"
    built_in = store and not delay
    request = ServeRequest(
        model=folder,
        api_key=api_key,
        max_batch=2,
        max_queue=4,
        max_tokens_cap=REPLY_TOKENS,
        db=db if built_in else None,
    )
    state = build_state(request.validate())
    if store and delay:

        async def complete(messages: Any, temperature: float) -> AsyncIterator[str]:
            async for delta in complete_text(state, messages, temperature=temperature, max_tokens=REPLY_TOKENS):
                await asyncio.sleep(delay)
                yield delta

        count = lambda messages: count_chat_tokens(state, messages)  # noqa: E731
        router = conversations_router(
            ConversationStore(db), complete, count, state.max_context, reply_tokens=REPLY_TOKENS
        )
        state.extra_routers.append(router)
    conversations = ConversationStore(db) if store else None
    try:
        with live(create_app(state)) as url:
            yield url, state, conversations
    finally:
        state.runner.close()
        if conversations is not None:
            conversations.close()


def _squash(text: str) -> str:
    """Text without whitespace: Markdown turns newlines into paragraphs and line breaks."""
    return "".join(text.split())


def test_real_app_streams_stores_and_summarises_in_the_page(tmp_path: Path) -> None:
    with real_server(tmp_path, api_key=KEY) as (url, _, store), browser_page(url) as page:
        _enter_key(page)
        assert "server" in page.text_content("#mode")
        page.fill("#temperature", "0")
        _send(page, "Hello there, how are you?")
        _wait_reply_done(page)
        [conversation] = store.list()
        stored = store.get(conversation["id"])
        assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
        shown = _assistant_text(page)
        assert shown.strip() and _squash(shown) == _squash(stored["messages"][1]["content"])
        assert page.locator("#conversations li .open").all_text_contents() == ["Hello there, how are you?"]

        for turn in range(10):  # the conversation outgrows the tiny context: the model summarises the oldest turns
            if page.is_visible("#summary"):
                break
            _send(page, f"{turn}: Hello there, how are you? I am fine. What is new today? Nothing much. " * 2)
            page.wait_for_function(
                f"() => document.querySelectorAll('#messages .message.assistant').length === {turn + 2}"
            )
            _wait_reply_done(page)
            assert page.text_content("#error") == ""
        summary = store.summary(conversation["id"])
        assert summary is not None and page.is_visible("#summary")
        assert page.text_content("#summary-text") == summary.text

        store.append(conversation["id"], "assistant", f"Injected: **bold** {HOSTILE}")  # HTML in a stored reply
        page.click("#new-chat")
        page.locator("#conversations li .open").first.click()
        page.wait_for_function("() => document.getElementById('messages').textContent.includes('Injected')")
        assert HOSTILE in _assistant_text(page) and page.locator("#messages script, #messages img").count() == 0
        assert page.evaluate("() => window.__pwned") is None
        assert page.text_content("#summary-text") == summary.text  # shown again when the conversation reopens

        page.locator("#conversations li .delete").first.click()
        page.wait_for_function("() => document.querySelectorAll('#conversations li').length === 0")
        assert store.list() == []


def test_real_app_without_a_store_streams_the_greedy_reply_of_the_openai_route(tmp_path: Path) -> None:
    import httpx

    with real_server(tmp_path, store=False) as (url, state, _), browser_page(url) as page:
        page.wait_for_function("() => document.getElementById('mode').textContent.includes('this page')")
        page.fill("#temperature", "0")
        page.fill("#max-tokens", "20")
        _send(page, "Hello there")
        _wait_reply_done(page)
        body = {
            "model": state.model_name,
            "messages": [{"role": "user", "content": "Hello there"}],
            "temperature": 0,
            "max_tokens": 20,
        }
        expected = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60).json()
        text = expected["choices"][0]["message"]["content"]
        assert text.strip() and _squash(_assistant_text(page)) == _squash(text)


def test_real_app_stop_keeps_the_partial_reply_in_the_store(tmp_path: Path) -> None:
    import httpx

    with real_server(tmp_path, delay=0.2) as (url, state, store), browser_page(url) as page:
        page.wait_for_function("() => document.getElementById('mode').textContent.includes('server')")
        page.fill("#temperature", "0")
        _send(page, "Hello there")
        page.wait_for_function(
            "() => { const m = document.querySelector('#messages .message.assistant .content');"
            " return m && m.textContent.trim().length > 0 && !document.getElementById('stop').disabled; }"
        )
        page.click("#stop")
        page.wait_for_selector("#messages .message.assistant .note")
        shown = _squash(_assistant_text(page))
        [conversation] = store.list()
        deadline = time.monotonic() + 10
        while len(store.messages(conversation["id"])) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # the server stores the reply as far as it got once it sees the disconnect
        user, assistant = store.messages(conversation["id"])
        stored = _squash(assistant["content"])
        body = {"messages": [{"role": "user", "content": "Hello there"}], "temperature": 0, "max_tokens": REPLY_TOKENS}
        full = _squash(
            httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60).json()["choices"][0]["message"]["content"]
        )
        assert user["content"] == "Hello there" and shown and stored.startswith(shown)
        assert full.startswith(stored) and len(stored) < len(full), "Stop did not cut the reply short"
        assert page.is_enabled("#send") and page.is_disabled("#stop")
