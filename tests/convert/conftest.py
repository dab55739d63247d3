"""Fixtures shared by the convert/merge tests (built per test module, as before): the tiny BPE tokenizer and the
tiny Llama of `hub_fixtures`."""

from __future__ import annotations

import pytest
from hub_fixtures import make_llama, make_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="module")
def llama(tokenizer):
    return make_llama(tokenizer.vocab_size)
