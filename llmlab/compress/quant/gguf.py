"""placeholder"""
def load_gguf_quantized(*a, **k):
    raise NotImplementedError
