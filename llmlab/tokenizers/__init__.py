"""llmlab.tokenizers"""
