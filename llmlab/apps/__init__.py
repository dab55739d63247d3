"""llmlab.apps: the NLP applications of `llmlab app` — bilingual prompt templates, running them with a chat model
or a fine-tuned encoder head, and parsing structured outputs."""
