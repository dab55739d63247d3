"""llmlab.generate"""
