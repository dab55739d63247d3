"""llmlab.embeddings: sentence embeddings from an encoder (pooling, normalisation) and a cosine-search index."""
