"""llmlab.models.gpt"""
