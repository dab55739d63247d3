"""Conversation memory: the SQLite store, the summarisation rule, the /api/conversations router, `chat --session`."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmlab.serve.conversations import conversations_router
from llmlab.serve.memory import (
    SCHEMA_VERSION,
    SUMMARY_HEADER,
    SUMMARY_INSTRUCTION,
    ConversationStore,
    Summary,
    fit_conversation,
    run_sync,
)


def count_words(messages: list[dict[str, str]]) -> int:
    """A stand-in tokenizer: one token per word plus 2 per message (its header)."""
    return sum(len(m["content"].split()) + 2 for m in messages)


class FakeModel:
    """`complete`: replies "echo <last user words>"; summarisation requests get "S<n> <first words>"."""

    def __init__(self) -> None:
        self.requests: list[list[dict[str, str]]] = []
        self.summaries = 0

    def reply(self, messages: list[dict[str, str]]) -> str:
        self.requests.append(messages)
        if messages[0]["content"] == SUMMARY_INSTRUCTION:
            self.summaries += 1
            return f"S{self.summaries} " + " ".join(messages[1]["content"].split()[:3])
        return "echo " + messages[-1]["content"]

    async def complete(self, messages: list[dict[str, str]], temperature: float) -> AsyncIterator[str]:
        for i, word in enumerate(self.reply(messages).split()):
            yield word if i == 0 else " " + word


# ---------------------------------------------------------------------------------------------------- store


def test_store_persists_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with ConversationStore(path) as store:
        first = store.create(system="Be brief.")
        store.append(first["id"], "user", "Hello there, how are you?")
        store.append(first["id"], "assistant", "Fine.")
        store.add_summary(first["id"], 1, "They greeted.")
        second = store.create(name="work")
    with ConversationStore(path) as store:
        again = store.get(first["id"])
        assert again["system"] == "Be brief." and again["title"] == "Hello there, how are you?"
        assert [(m["role"], m["content"]) for m in again["messages"]] == [
            ("user", "Hello there, how are you?"),
            ("assistant", "Fine."),
        ]
        assert again["summary"] == {"text": "They greeted.", "upto_message_id": 1}
        assert store.by_name("work")["id"] == second["id"] and store.by_name("nope") is None
        assert {c["id"] for c in store.list()} == {first["id"], second["id"]}
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_delete_removes_every_row(tmp_path: Path) -> None:
    with ConversationStore(tmp_path / "c.sqlite") as store:
        kept, gone = store.create(), store.create()
        for conversation in (kept, gone):
            store.append(conversation["id"], "user", "hi")
            store.add_summary(conversation["id"], 1, "s")
        store.delete(gone["id"])
        assert store.table_counts(gone["id"]) == {"conversations": 0, "messages": 0, "summaries": 0}
        assert store.table_counts(kept["id"]) == {"conversations": 1, "messages": 1, "summaries": 1}
        with pytest.raises(KeyError):
            store.delete(gone["id"])


def test_store_refuses_foreign_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not sqlite")
    with pytest.raises(ValueError, match="not a SQLite file"):
        ConversationStore(text)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(ValueError, match="did not create"):
        ConversationStore(other)
    newer = tmp_path / "newer.sqlite"
    ConversationStore(newer).close()
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(ValueError, match="upgrade llmlab"):
        ConversationStore(newer)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ConversationStore(tmp_path / "missing" / "c.sqlite")
    with pytest.raises(ValueError, match="role"):
        ConversationStore(tmp_path / "c.sqlite").append(1, "system", "x")


# ---------------------------------------------------------------------------------------------------- summarising


def turns(n: int, words: int = 5) -> list[dict]:
    """n turns (user + assistant), ids from 1, each message `words` words long."""
    out = []
    for i in range(n):
        out.append({"id": 2 * i + 1, "role": "user", "content": " ".join([f"u{i}"] * words)})
        out.append({"id": 2 * i + 2, "role": "assistant", "content": " ".join([f"a{i}"] * words)})
    return out


def test_fit_keeps_everything_when_it_fits() -> None:
    model = FakeModel()
    fitted = run_sync(fit_conversation("sys", None, turns(2), "new", count_words, 100), model.reply)
    assert fitted.summary is None and model.requests == []
    assert [m["role"] for m in fitted.messages] == ["system", "user", "assistant", "user", "assistant", "user"]


def test_fit_summarises_oldest_turns_with_the_model() -> None:
    model = FakeModel()
    history = turns(12)  # 24 messages of 7 tokens = 168 tokens
    budget = 60
    fitted = run_sync(fit_conversation("sys", None, history, "new question", count_words, budget), model.reply)
    assert fitted.summary is not None and model.summaries >= 1
    assert count_words(fitted.messages) <= budget
    system = fitted.messages[0]["content"]
    assert system.startswith("sys\n\n" + SUMMARY_HEADER) and fitted.summary.text in system
    kept = fitted.messages[1:-1]
    assert kept == [{"role": m["role"], "content": m["content"]} for m in history[-len(kept) :]] and kept
    assert kept[0]["role"] == "user"  # whole turns are folded
    assert fitted.summary.upto_message_id == history[-len(kept) - 1]["id"]
    folded = " ".join(r[1]["content"] for r in model.requests)
    assert "u0" in folded and "a0" in folded  # the oldest turn went to the model, not away
    assert all(count_words(r) <= budget for r in model.requests)  # each summarisation prompt fits too


def test_fit_cuts_a_message_too_long_to_summarise_whole() -> None:
    model = FakeModel()
    history = [{"id": 1, "role": "user", "content": "long " * 80}, {"id": 2, "role": "assistant", "content": "ok"}]
    fitted = run_sync(fit_conversation(None, None, history, "q", count_words, 50), model.reply)
    assert fitted.summary.upto_message_id == 2 and all(count_words(r) <= 50 for r in model.requests)
    assert "[...]" in model.requests[0][1]["content"] and "long" in model.requests[0][1]["content"]


def test_fit_extends_the_previous_summary() -> None:
    model = FakeModel()
    previous = Summary("earlier facts", 4)
    fitted = run_sync(fit_conversation(None, previous, turns(8)[4:], "q", count_words, 50), model.reply)
    assert SUMMARY_HEADER + " earlier facts" in model.requests[0][1]["content"]
    assert fitted.summary.upto_message_id > 4


def test_fit_refuses_a_message_that_cannot_fit() -> None:
    with pytest.raises(ValueError, match="more than the 10"):
        run_sync(fit_conversation("sys", None, turns(1), "word " * 20, count_words, 10), FakeModel().reply)


# ---------------------------------------------------------------------------------------------------- router


def sse_events(response) -> list[dict]:
    return [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]


def make_client(tmp_path: Path, model: FakeModel, context_tokens: int = 1000) -> tuple[TestClient, ConversationStore]:
    store = ConversationStore(tmp_path / "c.sqlite")
    app = FastAPI()
    app.include_router(conversations_router(store, model.complete, count_words, context_tokens, reply_tokens=10))
    return TestClient(app), store


def post(client: TestClient, conversation_id: int, content: str, **extra) -> list[dict]:
    with client.stream(
        "POST", f"/api/conversations/{conversation_id}/messages", json={"content": content, **extra}
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        return sse_events(r)


def test_router_sse_shape_and_storage(tmp_path: Path) -> None:
    model = FakeModel()
    client, store = make_client(tmp_path, model)
    created = client.post("/api/conversations", json={"system": "Be kind."})
    assert created.status_code == 201
    cid = created.json()["id"]
    events = post(client, cid, "hello world", temperature=0.1)
    assert [e["delta"] for e in events[:-1]] == ["echo", " hello", " world"]
    assert events[-1] == {"done": True, "message_id": events[-1]["message_id"], "summary": None}
    assert model.requests[0] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "hello world"},
    ]
    got = client.get(f"/api/conversations/{cid}").json()
    assert [(m["role"], m["content"]) for m in got["messages"]] == [
        ("user", "hello world"),
        ("assistant", "echo hello world"),
    ]
    assert got["messages"][-1]["id"] == events[-1]["message_id"] and got["title"] == "hello world"
    post(client, cid, "again")
    assert model.requests[-1][1:] == [
        {"role": "user", "content": "hello world"},
        {"role": "assistant", "content": "echo hello world"},
        {"role": "user", "content": "again"},
    ]
    assert [c["id"] for c in client.get("/api/conversations").json()] == [cid]
    assert client.delete(f"/api/conversations/{cid}").status_code == 204
    assert store.table_counts(cid) == {"conversations": 0, "messages": 0, "summaries": 0}
    assert client.get(f"/api/conversations/{cid}").status_code == 404
    assert client.post("/api/conversations/999/messages", json={"content": "x"}).status_code == 404
    assert client.post("/api/conversations", json={"title": 5}).status_code == 422


def test_router_summarises_and_survives_restart(tmp_path: Path) -> None:
    model = FakeModel()
    client, store = make_client(tmp_path, model, context_tokens=70)  # prompt budget 60 tokens
    cid = client.post("/api/conversations", json={}).json()["id"]
    summaries = []
    for i in range(10):
        summaries.append(post(client, cid, f"message number {i} " + "pad " * 4)[-1]["summary"])
    assert any(summaries) and model.summaries >= 1
    assert all(count_words(r) <= 60 for r in model.requests if r[0]["content"] != SUMMARY_INSTRUCTION)
    store.close()
    client2, store2 = make_client(tmp_path, FakeModel(), context_tokens=70)  # a restarted server
    got = client2.get(f"/api/conversations/{cid}").json()
    assert len(got["messages"]) == 20  # every message is kept; the summary only shortens the prompt
    assert got["summary"]["text"] == [s for s in summaries if s][-1]
    assert got["summary"]["upto_message_id"] < got["messages"][-1]["id"]
    store2.close()


# ---------------------------------------------------------------------------------------------------- chat --session

CORPUS = ["Hello there, how are you? I am fine. message number one two three\n" * 30]
SPECIALS = {"pad": "<|pad|>", "bos": "<|im_start|>", "eos": "<|im_end|>", "unk": "<|endoftext|>"}
CONTEXT = 256  # the summarisation instruction alone takes ~180 tokens of this tiny vocabulary


def test_stored_chat_continues_and_summarises(tmp_path: Path) -> None:
    import tiny_models

    from llmlab.generate.chat import ChatSession
    from llmlab.recipes.chat import StoredChat, run_chat
    from llmlab.tokenizers import train_tokenizer_from_iterator

    tokenizer = train_tokenizer_from_iterator("bpe", CORPUS, vocab_size=300, special_tokens=SPECIALS)
    model = tiny_models.tiny_gpt(0, vocab_size=tokenizer.vocab_size, block_size=256)

    def session() -> ChatSession:
        return ChatSession(model, tokenizer, template="chatml", max_new_tokens=4, context_tokens=CONTEXT, seed=0)

    path = tmp_path / "c.sqlite"
    first, out, err = session(), io.StringIO(), io.StringIO()
    memory = StoredChat(ConversationStore(path), "work", "Be brief.")
    assert run_chat(first, ["message number one"], out=out, err=err, memory=memory) == (1, 0)
    memory.store.close()

    second = session()  # a second `llmlab chat --session work`: the first exchange is in its prompt
    memory = StoredChat(ConversationStore(path), "work", None)
    assert memory.system == "Be brief."
    assert run_chat(second, ["message number two"], out=out, err=err, memory=memory) == (1, 0)
    prompt = tokenizer.decode(second.last_prompt_ids)
    assert prompt.startswith("<|im_start|>system\nBe brief.") and "message number one" in prompt
    assert memory.stored_messages() == 4

    lines = [f"message number {i} hello there how are you" for i in range(12)]
    assert run_chat(second, lines, out=out, err=err, memory=memory) == (12, 0), err.getvalue()
    summary = memory.store.summary(memory.conversation_id)
    assert summary is not None and "oldest turns are now summarised by the model" in err.getvalue()
    assert len(second.last_prompt_ids) <= CONTEXT - 4
    assert tokenizer.decode(second.last_prompt_ids).startswith(f"<|im_start|>system\nBe brief.\n\n{SUMMARY_HEADER}")
    assert memory.stored_messages() == 28  # nothing is dropped from the store
    run_chat(second, ["/reset"], out=out, err=err, memory=memory)
    assert memory.stored_messages() == 0 and memory.store.summary(memory.conversation_id) is None


def test_cli_session_continues_across_runs(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"

    def run(text: str) -> subprocess.CompletedProcess:
        args = ["chat", "--temperature", "0", "--max-new-tokens", "12", "--session", "me", "--db", str(db)]
        return subprocess.run(
            [sys.executable, "-m", "llmlab", *args], input=text, capture_output=True, text=True, timeout=300
        )

    first = run("My name is Ada.\n")
    assert first.returncode == 0, first.stderr
    second = run("What is my name?\n")
    assert second.returncode == 0, second.stderr
    with ConversationStore(db) as store:
        stored = store.get(store.by_name("me")["id"])
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"] * 2
    assert (
        stored["messages"][0]["content"] == "My name is Ada." and stored["messages"][2]["content"] == "What is my name?"
    )
    assert stored["messages"][3]["content"] == second.stdout.strip()
    # the second run saw the first exchange: its reply is what a chat holding that exchange answers (greedy)
    from llmlab.config.sampling import CHAT_SAMPLING
    from llmlab.generate.chat import ChatSession
    from llmlab.hub import load_for_inference
    from llmlab.tokenizers.chat import resolve_template

    loaded = load_for_inference(None)
    template, _ = resolve_template("auto", loaded.chat_template)
    sampling = CHAT_SAMPLING.replace(temperature=0.0, max_new_tokens=12)
    continued = ChatSession(loaded.model, loaded.tokenizer, template=template, sampling=sampling)
    continued.history = [{"role": m["role"], "content": m["content"]} for m in stored["messages"][:2]]
    assert continued.send("What is my name?") == stored["messages"][3]["content"]


def test_cli_db_needs_session(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "llmlab", "chat", "--db", str(tmp_path / "c.sqlite")],
        input="",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "--db keeps a --session" in proc.stderr and not (tmp_path / "c.sqlite").exists()
