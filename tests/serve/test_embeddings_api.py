"""POST /v1/embeddings through the official openai client against a live server (tiny chat model + the
packaged all-MiniLM-L6-v2 as the encoder): the vectors equal `llmlab.embeddings.embed_texts`, both encodings."""

from __future__ import annotations

import httpx
import pytest
import torch
from serve_helpers import live_server, save_tiny_model

from llmlab.embeddings import embed_texts

TEXTS = ["The cat sat on the mat.", "今天天气很好。", "A longer sentence about stock markets and interest rates."]


@pytest.fixture(scope="module")
def chat_folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("chat"))


@pytest.fixture(scope="module")
def server(chat_folder):
    with live_server(chat_folder, embedding_model="default") as live:
        yield live


def test_openai_client_embeddings_equal_embed_texts(server) -> None:
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x")
    from llmlab.hub import load_for_inference
    from llmlab.models.bert import minilm_path

    loaded = load_for_inference(minilm_path())
    want = embed_texts(loaded.model, loaded.tokenizer, TEXTS)
    got_b64 = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS)  # the client asks for base64
    got_float = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS, encoding_format="float")
    for got in (got_b64, got_float):
        assert [d.index for d in got.data] == [0, 1, 2] and got.model == "all-MiniLM-L6-v2"
        torch.testing.assert_close(torch.tensor([d.embedding for d in got.data]), want, atol=1e-5, rtol=0)
    n_tokens = sum(len(loaded.tokenizer.encode(t)) + 2 for t in TEXTS)
    assert got_float.usage.prompt_tokens == got_float.usage.total_tokens == n_tokens
    one = client.embeddings.create(model="m", input=TEXTS[0], encoding_format="float")
    torch.testing.assert_close(torch.tensor(one.data[0].embedding), want[0], atol=1e-5, rtol=0)
    ids = loaded.tokenizer.encode(TEXTS[1])
    by_ids = client.embeddings.create(model="m", input=[ids], encoding_format="float")  # token ids: same vector
    torch.testing.assert_close(torch.tensor(by_ids.data[0].embedding), want[1], atol=1e-5, rtol=0)
    listed = [m.id for m in client.models.list().data]  # the chat model and the encoder
    assert len(listed) == 2 and listed[1] == "all-MiniLM-L6-v2"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": []}, "input"),
        ({"input": ["ok", ""]}, "input"),
        ({"input": [[1, 2, 10**9]]}, "input"),
        ({"input": "x", "dimensions": 12}, "dimensions"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ],
)
def test_bad_requests_are_400_naming_the_field(server, body: dict, param: str) -> None:
    r = httpx.post(server.url + "/v1/embeddings", json={"model": "m", **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_without_an_encoder_the_route_says_how_to_get_one(chat_folder) -> None:
    with live_server(chat_folder) as live:
        r = httpx.post(live.url + "/v1/embeddings", json={"model": "m", "input": "hi"})
    assert r.status_code == 404
    assert "--embedding-model" in r.json()["error"]["message"]


def test_a_missing_embedding_model_fails_before_loading(tmp_path) -> None:
    from llmlab.recipes.serve import ServeRequest

    with pytest.raises(ValueError, match="--embedding-model .* not found"):
        ServeRequest(embedding_model=str(tmp_path / "nope")).validate()
