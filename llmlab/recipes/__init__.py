"""llmlab.recipes"""
