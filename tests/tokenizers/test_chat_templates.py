"""Chat templates: SmolLM2's own template (from its GGUF) rendered exactly like `transformers`, plus ours."""

import pytest

from llmlab.tokenizers.chat import TEMPLATES, apply_chat_template, chat_template_from_gguf

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2?"}],  # no system: SmolLM2's template adds its default one
    [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "7"},
        {"role": "user", "content": "Another one, in 中文 please 🦙"},
    ],
    [
        {"role": "user", "content": "  spaces  \n and newlines\n"},
        {"role": "assistant", "content": "ok"},
    ],
]


@pytest.fixture(scope="module")
def smollm2_pair(smollm2_file, smollm2_transformers_tokenizer):
    return smollm2_file.metadata, smollm2_transformers_tokenizer


@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_smollm2_template_matches_transformers(smollm2_pair, add_generation_prompt: bool) -> None:
    metadata, hf = smollm2_pair
    template = chat_template_from_gguf(metadata)
    for messages in CONVERSATIONS:
        ours = apply_chat_template(messages, template=template, add_generation_prompt=add_generation_prompt)
        theirs = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        assert ours == theirs
    assert ours.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")  # default system
    assert "<|im_start|>user\n  spaces  \n and newlines\n<|im_end|>" in ours  # content kept verbatim
    # SmolLM2's template is ChatML plus a default system prompt: with a system message they agree.
    assert apply_chat_template(CONVERSATIONS[1], template=template) == apply_chat_template(CONVERSATIONS[1], "chatml")


def test_builtin_templates_render_each_turn() -> None:
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
    ]
    assert apply_chat_template(msgs, "chatml") == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
    )
    assert apply_chat_template(msgs, "llama3", add_generation_prompt=False) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
    )
    assert apply_chat_template(msgs, "llama3").endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert apply_chat_template(msgs, "llama2") == (
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Bye [/INST]"
    )
    zh = [
        {"role": "system", "content": "你是助手。"},
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "你好！"},
        {"role": "user", "content": "再见"},
    ]
    assert apply_chat_template(zh, "zh") == "系统: 你是助手。\n用户: 你好\n助手: 你好！\n用户: 再见\n助手: "
    assert (
        apply_chat_template(zh, "zh", add_generation_prompt=False)
        == "系统: 你是助手。\n用户: 你好\n助手: 你好！\n用户: 再见\n"
    )
    assert set(TEMPLATES) == {"chatml", "llama2", "llama3", "zh"}


def test_template_helpers_like_transformers() -> None:
    src = (
        "{{ strftime_now('%Y') | length }}|{{ {'a': 'é'} | tojson }}|"
        "{% for m in messages %}{% if loop.first %}{% break %}{% endif %}{% endfor %}"
    )
    assert apply_chat_template([], template=src) == '4|{"a": "é"}|'


@pytest.mark.parametrize(
    ("messages", "template", "match"),
    [
        ([{"content": "hi"}], "chatml", "message 0 has no 'role'"),
        ([{"role": "user"}], "chatml", "message 0 has no 'content'"),
        ([{"role": "user", "content": 3}], "chatml", "'content' must be a string"),
        (["hi"], "chatml", "message 0 is a str"),
        ("hi", "chatml", "must be a list"),
        ([{"role": "tool", "content": "x"}], "zh", "unknown role tool"),
        ([{"role": "assistant", "content": "x"}], "llama2", "must alternate"),
        ([{"role": "user", "content": "x"}], "vicuna", "unknown chat template 'vicuna'"),
        ([{"role": "user", "content": "x"}], "{% if %}", "syntax error"),
    ],
)
def test_bad_messages_raise_clear_value_error(messages, template: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        apply_chat_template(messages, template=template)


def test_missing_template_in_gguf() -> None:
    with pytest.raises(ValueError, match="no tokenizer.chat_template"):
        chat_template_from_gguf({"general.architecture": "llama"})
