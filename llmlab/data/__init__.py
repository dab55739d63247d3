"""llmlab.data"""
