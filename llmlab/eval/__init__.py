"""llmlab.eval"""
