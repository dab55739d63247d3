"""llmlab.embeddings: sentence embeddings from an encoder (pooling, normalisation) and a cosine-search index.

from llmlab.hub import load_for_inference
from llmlab.models.bert import minilm_path
from llmlab.embeddings import EmbeddingIndex, embed_texts

loaded = load_for_inference(minilm_path())
vectors = embed_texts(loaded.model, loaded.tokenizer, texts)          # (N, 384), unit rows
index = EmbeddingIndex(vectors, texts, meta={"model": "all-MiniLM-L6-v2"})
index.search(embed_texts(loaded.model, loaded.tokenizer, ["query"]), k=5)   # [[(row, cosine), ...]]
"""

from llmlab.embeddings.encode import check_embed_args, embed_rows, embed_texts, encoder_max_length
from llmlab.embeddings.index import EmbeddingIndex
from llmlab.embeddings.pooling import POOLINGS, check_pooling, l2_normalize, pool

__all__ = [
    "EmbeddingIndex",
    "POOLINGS",
    "check_embed_args",
    "check_pooling",
    "embed_rows",
    "embed_texts",
    "encoder_max_length",
    "l2_normalize",
    "pool",
]
