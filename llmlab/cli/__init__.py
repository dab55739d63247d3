"""llmlab.cli"""
