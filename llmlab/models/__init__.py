"""llmlab.models"""
