"""The writing and code templates: rewrite, story, copywriting, code-generate, code-explain (English and Chinese).

Free-text tasks: no output schema. Rewriting and code decode greedily (a faithful rewrite, reproducible code);
stories and copy sample (temperature 0.7, top-p 0.9; `--seed` makes a sample reproducible) because greedy
decoding of a small model loops on the same sentence.
"""

from __future__ import annotations

from llmlab.apps.templates import AppTemplate, Example, Prompt, register_template
from llmlab.config.sampling import SamplingConfig

CREATIVE = SamplingConfig(max_new_tokens=256, temperature=0.7, top_p=0.9, repetition_penalty=1.1)

register_template(
    AppTemplate(
        name="rewrite",
        description="Rewrite a text in another style (--style formal|casual|concise|..., default formal).",
        prompts={
            "en": Prompt(
                system="You rewrite texts in the requested style. Keep the meaning; reply with the rewritten text.",
                user="Rewrite this text in a {style} style:\n\n{text}",
                examples=(
                    Example(
                        {"style": "formal", "text": "hey, can't make it tomorrow, sorry!"},
                        "I am sorry, but I will not be able to attend tomorrow.",
                    ),
                ),
            ),
            "zh": Prompt(
                system="你负责按要求的风格改写文字。保持原意，只回答改写后的文字。",
                user="请用{style}的风格改写下面的文字：\n\n{text}",
                examples=(
                    Example({"style": "正式", "text": "明天去不了了，不好意思哈！"}, "非常抱歉，我明天无法出席。"),
                ),
            ),
        },
        options={"style": {"en": "formal", "zh": "正式"}},
        sampling=SamplingConfig(max_new_tokens=128, temperature=0.0, repetition_penalty=1.1),
    )
)

register_template(
    AppTemplate(
        name="story",
        description="Write a short story from a premise.",
        prompts={
            "en": Prompt(
                system="You are a storyteller. Write a short, complete story (one or two paragraphs).",
                user="Write a short story about: {text}",
            ),
            "zh": Prompt(
                system="你是一位讲故事的人。写一个简短完整的故事（一两段）。", user="请写一个短故事，主题是：{text}"
            ),
        },
        sampling=CREATIVE,
    )
)

register_template(
    AppTemplate(
        name="copywriting",
        description="Write marketing copy (a headline and a short paragraph) for a product or event.",
        prompts={
            "en": Prompt(
                system="You are a copywriter. Write a catchy headline and one short persuasive paragraph.",
                user="Write advertising copy for: {text}",
            ),
            "zh": Prompt(
                system="你是一名文案。写一个吸引人的标题和一段简短有说服力的文案。",
                user="请为以下内容写广告文案：{text}",
            ),
        },
        sampling=CREATIVE.replace(max_new_tokens=160),
    )
)

register_template(
    AppTemplate(
        name="code-generate",
        description="Write a Python function for a task description.",
        prompts={
            "en": Prompt(
                system="You are a Python programmer. Reply with one Python code block and no explanation.",
                user="Write a Python function that does this: {text}",
                examples=(
                    Example(
                        {"text": "return the square of a number"},
                        "```python\ndef square(x):\n    return x * x\n```",
                    ),
                ),
            ),
            "zh": Prompt(
                system="你是一名 Python 程序员。只回答一个 Python 代码块，不要解释。",
                user="请写一个 Python 函数，功能是：{text}",
                examples=(Example({"text": "返回一个数的平方"}, "```python\ndef square(x):\n    return x * x\n```"),),
            ),
        },
        sampling=SamplingConfig(max_new_tokens=200, temperature=0.0),
    )
)

register_template(
    AppTemplate(
        name="code-explain",
        description="Explain what a piece of code does, in plain words.",
        prompts={
            "en": Prompt(
                system="You explain code to a beginner in a few clear sentences.",
                user="Explain what this code does:\n\n{text}",
            ),
            "zh": Prompt(system="你用几句清楚的话向初学者解释代码。", user="请解释这段代码的作用：\n\n{text}"),
        },
        sampling=SamplingConfig(max_new_tokens=160, temperature=0.0, repetition_penalty=1.1),
    )
)
