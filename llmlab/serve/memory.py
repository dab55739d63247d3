"""Conversation memory: one SQLite file (stdlib `sqlite3`, WAL journal) shared by `llmlab serve` and `llmlab chat
--session`, and the rule that keeps a long conversation inside the model's context by summarising its oldest turns.

Schema (`SCHEMA`; `schema_version.version` = `SCHEMA_VERSION`):

    schema_version(version)                                   one row
    conversations(id PRIMARY KEY, name UNIQUE NULL, title, system NULL, created_at, updated_at)
                                                              `name`: the terminal chat's --session NAME
    messages(id PRIMARY KEY, conversation_id, role IN ('user','assistant'), content, created_at)
    summaries(id PRIMARY KEY, conversation_id, upto_message_id, text, created_at)
                                                              the model's summary of every message <= upto_message_id

Timestamps are UTC ISO 8601. Rows of a conversation are deleted with it (foreign keys ON DELETE CASCADE, and an
explicit delete). Every message stays stored: a summary only changes what the *prompt* holds.

Summarisation rule (`fit_conversation`): the prompt is the system message (the system prompt, then "Summary of the
earlier conversation: ..." when there is one) + the turns after the latest summary + the new user message. When it
takes more than `budget` tokens, the oldest turns (a user message and the replies after it) are folded, one turn at
a time, until the rest fits with room for a summary (a quarter of the budget); the model then writes a new summary
of the previous summary plus the folded turns, in chunks whose summarisation prompt fits the budget (a single
message too long for it is cut, marked "[...]"). The summary is stored with the id
of the last folded message. Nothing is dropped silently: if even the system prompt, the summary and the new message
alone do not fit, it is an error. (The idea is the "summary buffer" memory of chat front-ends; see e.g.
MemGPT, https://arxiv.org/abs/2310.08560, for the recursive-summary variant.)
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmlab.io import file_mode
from llmlab.io.sqlite import LockedSQLite

SCHEMA_VERSION = 1
ROLES = ("user", "assistant")
DEFAULT_TITLE = "New chat"

SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE, title TEXT NOT NULL, system TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY, conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')), content TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX messages_by_conversation ON messages (conversation_id, id);
CREATE TABLE summaries (
    id INTEGER PRIMARY KEY, conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    upto_message_id INTEGER NOT NULL, text TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX summaries_by_conversation ON summaries (conversation_id, upto_message_id);
"""

SUMMARY_INSTRUCTION = (
    "You keep the memory of a conversation. Summarise the conversation below in a few sentences: keep names, "
    "facts, numbers, decisions and open questions; write only the summary."
)
SUMMARY_HEADER = "Summary of the earlier conversation:"
SUMMARY_SHARE = 4  # room kept for the summary: 1/SUMMARY_SHARE of the prompt budget

_COLUMNS = "id, name, title, system, created_at, updated_at"  # of a conversation, as its dict has them
Message = dict[str, str]  # {"role": ..., "content": ...}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Summary:
    """The model's summary of every message of a conversation up to `upto_message_id`."""

    text: str
    upto_message_id: int


class ConversationStore(LockedSQLite):
    """An open conversation file (thread-safe: one connection, one lock). Creates the file when it is missing.

    Raises:
        FileNotFoundError: the folder of `path` does not exist.
        ValueError: `path` is not a conversation store (another SQLite file, a folder, not SQLite) or was written
            by a newer llmlab.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        path = Path(path)
        if not path.parent.is_dir():
            raise FileNotFoundError(f"{path}: folder {path.parent} does not exist; create it or choose another --db")
        if path.is_dir():
            raise ValueError(f"{path} is a folder; give --db a file name such as conversations.sqlite")
        if path.exists() and path.stat().st_size:
            with open(path, "rb") as f:
                if f.read(16) != b"SQLite format 3\x00":
                    raise ValueError(f"{path} is not a SQLite file; llmlab never replaces it — choose another --db")
        created = not path.exists()
        super().__init__(path)
        if created:
            os.chmod(path, file_mode())
        self._check_schema()

    def _check_schema(self) -> None:
        tables = {name for (name,) in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            with self._lock, self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executescript(SCHEMA)
                self._conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            return
        if "schema_version" not in tables or "conversations" not in tables:
            self._conn.close()
            raise ValueError(
                f"{self.path} is a SQLite file llmlab did not create for conversations; choose another --db"
            )
        (version,) = self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        if version is None or version > SCHEMA_VERSION:
            self._conn.close()
            raise ValueError(
                f"{self.path} has conversation schema version {version}, this llmlab reads {SCHEMA_VERSION}; "
                "upgrade llmlab or choose another --db"
            )

    # ------------------------------------------------------------------ conversations
    def create(self, title: str | None = None, system: str | None = None, name: str | None = None) -> dict[str, Any]:
        """A new conversation; returns it as `get_conversation` does (without messages)."""
        now = _now()
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO conversations (name, title, system, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                (name, title or name or DEFAULT_TITLE, system, now, now),
            )
        return self.conversation(int(cursor.lastrowid))

    def conversation(self, conversation_id: int) -> dict[str, Any]:
        """{id, name, title, system, created_at, updated_at}.

        Raises:
            KeyError: no such conversation.
        """
        rows = self._all(f"SELECT {_COLUMNS} FROM conversations WHERE id = ?", (conversation_id,))
        if not rows:
            raise KeyError(f"no conversation {conversation_id}; list them with GET /api/conversations")
        return _conversation_dict(rows[0])

    def by_name(self, name: str) -> dict[str, Any] | None:
        """The conversation with this --session name, or None."""
        rows = self._all(f"SELECT {_COLUMNS} FROM conversations WHERE name = ?", (name,))
        return _conversation_dict(rows[0]) if rows else None

    def list(self) -> list[dict[str, Any]]:
        """Every conversation, most recently updated first."""
        rows = self._all(f"SELECT {_COLUMNS} FROM conversations ORDER BY updated_at DESC, id DESC")
        return [_conversation_dict(row) for row in rows]

    def update(self, conversation_id: int, *, title: str | None = None, system: str | None = None) -> None:
        """Change the title and/or the system prompt (None: unchanged; "" clears the system prompt)."""
        self.conversation(conversation_id)
        with self._lock:
            if title is not None:
                self._conn.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))
            if system is not None:
                self._conn.execute(
                    "UPDATE conversations SET system = ? WHERE id = ?", (system or None, conversation_id)
                )

    def delete(self, conversation_id: int) -> None:
        """Delete a conversation and all its rows (messages, summaries).

        Raises:
            KeyError: no such conversation.
        """
        self.conversation(conversation_id)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("DELETE FROM summaries WHERE conversation_id = ?", (conversation_id,))
                self._conn.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))
                self._conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def clear(self, conversation_id: int) -> None:
        """Delete the messages and summaries of a conversation, keeping the conversation (the chat's /reset)."""
        with self._lock:
            self._conn.execute("DELETE FROM summaries WHERE conversation_id = ?", (conversation_id,))
            self._conn.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))

    # ------------------------------------------------------------------ messages and summaries
    def append(self, conversation_id: int, role: str, content: str) -> int:
        """Store a message; returns its id. The first user message names an untitled conversation."""
        if role not in ROLES:
            raise ValueError(f"message role must be one of {', '.join(ROLES)}, got {role!r}")
        conversation = self.conversation(conversation_id)
        now = _now()
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO messages (conversation_id, role, content, created_at) VALUES (?, ?, ?, ?)",
                (conversation_id, role, content, now),
            )
            self._conn.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))
            if role == "user" and conversation["title"] == DEFAULT_TITLE and content.strip():
                title = " ".join(content.split())[:60]
                self._conn.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))
        return int(cursor.lastrowid)

    def messages(self, conversation_id: int, after: int = 0) -> list[dict[str, Any]]:
        """The messages of a conversation with id > `after`, oldest first: {id, role, content, created_at}."""
        rows = self._all(
            "SELECT id, role, content, created_at FROM messages WHERE conversation_id = ? AND id > ? ORDER BY id",
            (conversation_id, after),
        )
        return [{"id": i, "role": role, "content": content, "created_at": at} for i, role, content, at in rows]

    def add_summary(self, conversation_id: int, upto_message_id: int, text: str) -> None:
        """Store the model's summary of every message up to `upto_message_id`."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO summaries (conversation_id, upto_message_id, text, created_at) VALUES (?, ?, ?, ?)",
                (conversation_id, upto_message_id, text, _now()),
            )

    def summary(self, conversation_id: int) -> Summary | None:
        """The latest summary of a conversation (the one covering the most messages), or None."""
        rows = self._all(
            "SELECT text, upto_message_id FROM summaries WHERE conversation_id = ? "
            "ORDER BY upto_message_id DESC, id DESC LIMIT 1",
            (conversation_id,),
        )
        return Summary(*rows[0]) if rows else None

    def get(self, conversation_id: int) -> dict[str, Any]:
        """A conversation with all its messages and its latest summary ({text, upto_message_id} or None)."""
        record = self.conversation(conversation_id)
        summary = self.summary(conversation_id)
        record["messages"] = self.messages(conversation_id)
        record["summary"] = (
            None if summary is None else {"text": summary.text, "upto_message_id": summary.upto_message_id}
        )
        return record

    def table_counts(self, conversation_id: int) -> dict[str, int]:
        """Rows each table holds for a conversation (to check that a delete removed them)."""
        return {
            table: self._all(f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (conversation_id,))[0][0]
            for table, column in (
                ("conversations", "id"),
                ("messages", "conversation_id"),
                ("summaries", "conversation_id"),
            )
        }


def _conversation_dict(row: tuple) -> dict[str, Any]:
    return dict(zip(_COLUMNS.split(", "), row, strict=True))


# ---------------------------------------------------------------------------------------------------- summarising


def system_message(system: str | None, summary: str | None) -> list[Message]:
    """The system message of a prompt: the system prompt, then the summary of the earlier turns (if any)."""
    parts = [p for p in (system, f"{SUMMARY_HEADER} {summary}" if summary else None) if p]
    return [{"role": "system", "content": "\n\n".join(parts)}] if parts else []


def _turn_ends(turns: Sequence[dict[str, Any]]) -> list[int]:
    """Exclusive end index of each whole turn (a user message and the replies after it)."""
    starts = [i for i, m in enumerate(turns) if m["role"] == "user" and i > 0]
    return [*starts, len(turns)]


def _summary_request(previous: str | None, folded: Sequence[dict[str, Any]]) -> list[Message]:
    transcript = "\n".join(f"{m['role']}: {m['content']}" for m in folded)
    if previous:
        transcript = f"{SUMMARY_HEADER} {previous}\n\n{transcript}"
    return [{"role": "system", "content": SUMMARY_INSTRUCTION}, {"role": "user", "content": transcript}]


def _next_chunk(
    summary: str | None, folded: list[dict[str, Any]], count_tokens: Callable[[list[Message]], int], budget: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the longest run of `folded` whose summarisation prompt, after `summary`, fits `budget`; the rest). A first
    message too long on its own is cut to fit (its start is kept, "[...]" marks the cut)."""
    size = 0
    while size < len(folded) and count_tokens(_summary_request(summary, folded[: size + 1])) <= budget:
        size += 1
    if size:
        return folded[:size], folded[size:]
    message = folded[0]
    content = message["content"]
    while content and count_tokens(_summary_request(summary, [{**message, "content": content + " [...]"}])) > budget:
        content = content[: len(content) // 2]
    if not content:
        raise ValueError(
            f"the prompt budget of {budget} tokens is too small to summarise the earlier turns; "
            "raise the context (--context-tokens, --max-context) or lower the reply length"
        )
    return [{**message, "content": content + " [...]"}], folded[1:]


@dataclass
class FittedPrompt:
    """What `fit_conversation` decided: the prompt, and the new summary (None when none was needed)."""

    messages: list[Message]
    summary: Summary | None


def fit_conversation(
    system: str | None,
    summary: Summary | None,
    turns: list[dict[str, Any]],
    user_text: str,
    count_tokens: Callable[[list[Message]], int],
    budget: int,
) -> Generator[list[Message], str, FittedPrompt]:
    """The prompt for a new user message, summarising the oldest turns when it would exceed `budget` tokens.

    `turns` are the stored messages after `summary` ({id, role, content}). A coroutine without I/O: it yields each
    summarisation request (messages for the model) and is sent the model's text; its return value is the prompt.
    Drive it with `run_sync` or the router's async loop.

    Raises:
        ValueError: the system prompt, the summary and the new message alone take more than `budget` tokens.
    """
    user = {"role": "user", "content": user_text}
    text = summary.text if summary else None
    upto = summary.upto_message_id if summary else 0
    new_summary: Summary | None = None
    alone = count_tokens([*system_message(system, None), user])
    if alone > budget:
        raise ValueError(
            f"the system prompt and this message take {alone} tokens, more than the {budget} the context allows; "
            "shorten the message or the system prompt"
        )
    while True:
        prompt = [*system_message(system, text), *({"role": m["role"], "content": m["content"]} for m in turns), user]
        if count_tokens(prompt) <= budget:
            return FittedPrompt(prompt, new_summary)
        if not turns:
            raise ValueError(
                f"the system prompt, the conversation summary and this message take {count_tokens(prompt)} tokens, "
                f"more than the {budget} the context allows; shorten the message or the system prompt"
            )
        room = budget - budget // SUMMARY_SHARE
        keep_from = len(turns)
        for end in _turn_ends(turns):  # fold the fewest oldest turns that leave room for a summary
            rest = [{"role": m["role"], "content": m["content"]} for m in turns[end:]]
            if count_tokens([*system_message(system, None), *rest, user]) <= room:
                keep_from = end
                break
        folded, turns = turns[:keep_from], turns[keep_from:]
        upto = int(folded[-1]["id"])
        while folded:
            chunk, folded = _next_chunk(text, folded, count_tokens, budget)
            text = (yield _summary_request(text, chunk)).strip() or text
        new_summary = Summary(text or "", upto)


def run_sync(
    fitting: Generator[list[Message], str, FittedPrompt], summarise: Callable[[list[Message]], str]
) -> FittedPrompt:
    """Drive `fit_conversation` with a blocking `summarise(messages) -> text`."""
    try:
        request = next(fitting)
        while True:
            request = fitting.send(summarise(request))
    except StopIteration as done:
        return done.value
