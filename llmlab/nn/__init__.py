"""llmlab.nn"""
