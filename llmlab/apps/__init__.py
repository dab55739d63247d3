"""`llmlab app`: bilingual prompt templates for NLP applications, run with a chat model; structured-output parsing.

- `templates`: the registry (`get_template`, `task_names`, `task_list`), `AppTemplate`/`Prompt`/`Example`, language
  detection; the templates themselves are in `library` (summarize, classify, intent, ner, relation, qa) and
  `library_writing` (rewrite, story, copywriting, code-generate, code-explain).
- `render`: checking one input (`prepare_input`) and turning it into chat messages (`render_messages`).
- `parse`: parsing a reply into the task's JSON with a schema check (`parse_output`, `OutputParseError`).
- `spans`: entity names <-> BIO tags (scoring the NER app like a tagger; printing a tagger's output as JSON).
- `run`: decoding with a chat model (`ChatRunner`) and `run_task` (render, decode, parse) -> `AppResult`.

Running a fine-tuned encoder head instead of a chat model is dispatched by `llmlab.recipes.app` (layer 7).
"""

from llmlab.apps.parse import OutputParseError, extract_json, parse_output
from llmlab.apps.render import AppInput, parse_labels, prepare_input, render_messages
from llmlab.apps.run import AppResult, ChatRunner, run_task
from llmlab.apps.spans import bio_tags, entities_from_tags, find_spans, joiner_for
from llmlab.apps.templates import AppTemplate, Example, Prompt, detect_lang, get_template, task_list, task_names

__all__ = [
    "AppInput",
    "AppResult",
    "AppTemplate",
    "ChatRunner",
    "Example",
    "OutputParseError",
    "Prompt",
    "bio_tags",
    "detect_lang",
    "entities_from_tags",
    "extract_json",
    "find_spans",
    "get_template",
    "joiner_for",
    "parse_labels",
    "parse_output",
    "prepare_input",
    "render_messages",
    "run_task",
    "task_list",
    "task_names",
]
