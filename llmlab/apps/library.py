"""The NLP application templates: summarize, classify, intent, ner, relation, qa (English and Chinese).

Structured tasks decode greedily and show the model two or three worked examples in the exact output format;
the examples are made up for the prompt (short, covering the "nothing found" case) and never taken from a test
set. Output formats are kept flat for a 135M model: NER is one JSON object with a list of strings per entity
type, relation extraction a JSON list of `{"head", "relation", "tail"}` triples, classification and intent the
bare label (parsed into `{"label": ...}`), QA a span copied from the passage.
"""

from __future__ import annotations

from llmlab.apps.templates import AppTemplate, Example, Prompt, register_template
from llmlab.config.sampling import SamplingConfig

GREEDY = SamplingConfig(max_new_tokens=64, temperature=0.0)
ENTITY_TYPES = ("PER", "LOC", "ORG")

NER_SCHEMA = {
    "type": "object",
    "properties": {kind: {"type": "array", "items": {"type": "string"}} for kind in ENTITY_TYPES},
    "required": list(ENTITY_TYPES),
    "additionalProperties": False,
}
TRIPLE_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"head": {"type": "string"}, "relation": {"type": "string"}, "tail": {"type": "string"}},
        "required": ["head", "relation", "tail"],
        "additionalProperties": False,
    },
}
LABEL_SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}

register_template(
    AppTemplate(
        name="summarize",
        description="Summarise a text in one or two sentences.",
        prompts={
            "en": Prompt(
                system="You summarise texts. Reply with a summary of one or two sentences and nothing else.",
                user="Summarise this text in one or two sentences:\n\n{text}",
            ),
            "zh": Prompt(
                system="你负责写摘要。只用一两句话概括原文，不要写其他内容。",
                user="请用一两句话概括下面的文字：\n\n{text}",
            ),
        },
        sampling=SamplingConfig(max_new_tokens=96, temperature=0.0),
    )
)

register_template(
    AppTemplate(
        name="classify",
        description="Put a text into one of the labels you give (--labels a,b,c); prints the label.",
        prompts={
            "en": Prompt(
                system="You classify texts. Reply with exactly one of the given labels and nothing else.",
                user="Labels: {labels}\nText: {text}\nLabel:",
                examples=(
                    Example(
                        {"labels": "sports, politics, technology", "text": "The team won the final 3-1."}, "sports"
                    ),
                    Example({"labels": "positive, negative", "text": "I hated every minute of this film."}, "negative"),
                ),
            ),
            "zh": Prompt(
                system="你负责文本分类。只回答给定标签中的一个，不要写其他内容。",
                user="标签：{labels}\n文本：{text}\n标签：",
                examples=(
                    Example({"labels": "体育, 政治, 科技", "text": "主队在决赛中三比一获胜。"}, "体育"),
                    Example({"labels": "正面, 负面", "text": "这部电影太难看了，浪费时间。"}, "负面"),
                ),
            ),
        },
        output="label",
        schema=LABEL_SCHEMA,
        labels="required",
        sampling=GREEDY.replace(max_new_tokens=16, stop=("\n",)),
        encoder_task="sequence_classification",
    )
)

INTENTS = ("greeting", "weather", "book_flight", "play_music", "set_alarm", "complaint", "other")
register_template(
    AppTemplate(
        name="intent",
        description="Detect the intent of a user utterance (a default intent set, or --labels).",
        prompts={
            "en": Prompt(
                system="You detect the intent of what a user says. Reply with exactly one of the given intents.",
                user="Intents: {labels}\nUtterance: {text}\nIntent:",
                examples=(
                    Example({"labels": ", ".join(INTENTS), "text": "Will it rain in Paris tomorrow?"}, "weather"),
                    Example({"labels": ", ".join(INTENTS), "text": "Wake me up at 7 am please."}, "set_alarm"),
                ),
            ),
            "zh": Prompt(
                system="你负责识别用户话语的意图。只回答给定意图中的一个。",
                user="意图：{labels}\n话语：{text}\n意图：",
                examples=(
                    Example({"labels": ", ".join(INTENTS), "text": "明天北京会下雨吗？"}, "weather"),
                    Example({"labels": ", ".join(INTENTS), "text": "放一首周杰伦的歌。"}, "play_music"),
                ),
            ),
        },
        output="label",
        schema=LABEL_SCHEMA,
        labels="default",
        default_labels={"en": INTENTS, "zh": INTENTS},
        sampling=GREEDY.replace(max_new_tokens=16, stop=("\n",)),
    )
)

register_template(
    AppTemplate(
        name="ner",
        description='Named entities (PER, LOC, ORG) as JSON: {"PER": [...], "LOC": [...], "ORG": [...]}.',
        prompts={
            "en": Prompt(
                system=(
                    "You find named entities. Reply with one JSON object with the keys PER (people), LOC (places) "
                    "and ORG (organisations), each a list of names copied exactly from the text."
                ),
                user="Text: {text}\nJSON:",
                examples=(
                    Example(
                        {"text": "Barack Obama visited the Microsoft offices in Seattle."},
                        '{"PER": ["Barack Obama"], "LOC": ["Seattle"], "ORG": ["Microsoft"]}',
                    ),
                    Example(
                        {"text": "Maria Garcia works for the United Nations in Geneva and Paris."},
                        '{"PER": ["Maria Garcia"], "LOC": ["Geneva", "Paris"], "ORG": ["United Nations"]}',
                    ),
                    Example({"text": "The weather was nice yesterday."}, '{"PER": [], "LOC": [], "ORG": []}'),
                ),
            ),
            "zh": Prompt(
                system=(
                    "你负责命名实体识别。只回答一个 JSON 对象，键为 PER（人名）、LOC（地名）和 ORG（机构名），"
                    "每个键对应从原文中原样摘出的名称列表。"
                ),
                user="文本：{text}\nJSON：",
                examples=(
                    Example(
                        {"text": "马云在杭州创办了阿里巴巴。"},
                        '{"PER": ["马云"], "LOC": ["杭州"], "ORG": ["阿里巴巴"]}',
                    ),
                    Example(
                        {"text": "李华和王芳去北京大学参观，然后去了上海。"},
                        '{"PER": ["李华", "王芳"], "LOC": ["上海"], "ORG": ["北京大学"]}',
                    ),
                    Example({"text": "今天天气很好。"}, '{"PER": [], "LOC": [], "ORG": []}'),
                ),
            ),
        },
        output="json",
        schema=NER_SCHEMA,
        sampling=GREEDY.replace(max_new_tokens=96),
        encoder_task="token_classification",
    )
)

RELATIONS = ("founder_of", "works_for", "located_in", "born_in", "capital_of")
register_template(
    AppTemplate(
        name="relation",
        description='Relation triples as JSON: [{"head", "relation", "tail"}] (default types, or --labels).',
        prompts={
            "en": Prompt(
                system=(
                    "You extract relations between named things. Reply with a JSON list of objects "
                    '{"head": ..., "relation": ..., "tail": ...}; head and tail are copied from the text and '
                    "relation is one of the given relation types. Reply [] when there is none."
                ),
                user="Relation types: {labels}\nText: {text}\nJSON:",
                examples=(
                    Example(
                        {
                            "labels": ", ".join(RELATIONS),
                            "text": "Steve Jobs founded Apple, which is based in Cupertino.",
                        },
                        '[{"head": "Steve Jobs", "relation": "founder_of", "tail": "Apple"}, '
                        '{"head": "Apple", "relation": "located_in", "tail": "Cupertino"}]',
                    ),
                    Example({"labels": ", ".join(RELATIONS), "text": "It was a quiet afternoon."}, "[]"),
                ),
            ),
            "zh": Prompt(
                system=(
                    "你负责关系抽取。只回答一个 JSON 列表，每项为 "
                    '{"head": ..., "relation": ..., "tail": ...}；head 和 tail 从原文中原样摘出，relation 为给定关系'
                    "类型之一。没有关系时回答 []。"
                ),
                user="关系类型：{labels}\n文本：{text}\nJSON：",
                examples=(
                    Example(
                        {"labels": ", ".join(RELATIONS), "text": "马云创办了阿里巴巴，阿里巴巴总部位于杭州。"},
                        '[{"head": "马云", "relation": "founder_of", "tail": "阿里巴巴"}, '
                        '{"head": "阿里巴巴", "relation": "located_in", "tail": "杭州"}]',
                    ),
                    Example({"labels": ", ".join(RELATIONS), "text": "那是一个安静的下午。"}, "[]"),
                ),
            ),
        },
        output="json",
        schema=TRIPLE_SCHEMA,
        labels="default",
        default_labels={"en": RELATIONS, "zh": RELATIONS},
        sampling=GREEDY.replace(max_new_tokens=128),
        encoder_task="relation_classification",
    )
)

register_template(
    AppTemplate(
        name="qa",
        description="Answer a question (--question) from a passage (--text) with a span copied from it.",
        prompts={
            "en": Prompt(
                system="You answer questions about a passage. Reply with the shortest span of the passage that "
                "answers the question, copied exactly, and nothing else.",
                user="Passage: {text}\nQuestion: {question}\nAnswer:",
                examples=(
                    Example(
                        {
                            "text": "The Eiffel Tower was finished in 1889. It stands in Paris, on the Champ de Mars.",
                            "question": "When was the Eiffel Tower finished?",
                        },
                        "1889",
                    ),
                    Example(
                        {
                            "text": "Anna Berg is a chemist. She works for Nordlab in Oslo.",
                            "question": "Who does Anna Berg work for?",
                        },
                        "Nordlab",
                    ),
                ),
            ),
            "zh": Prompt(
                system="你根据短文回答问题。只回答短文中能回答问题的最短片段，原样摘出，不要写其他内容。",
                user="短文：{text}\n问题：{question}\n答案：",
                examples=(
                    Example({"text": "长城位于中国北方，全长两万多公里。", "question": "长城位于哪里？"}, "中国北方"),
                    Example(
                        {"text": "张伟是一名医生，他在武汉的协和医院工作。", "question": "张伟在哪家医院工作？"},
                        "协和医院",
                    ),
                ),
            ),
        },
        fields=("question",),
        sampling=GREEDY.replace(max_new_tokens=32, stop=("\n",)),
        encoder_task="question_answering",
    )
)
