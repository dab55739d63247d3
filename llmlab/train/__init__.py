"""llmlab.train"""
