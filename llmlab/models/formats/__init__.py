"""Model file formats shared by every family: Hugging Face folders (`hf`), GGUF tensor renaming (`gguf_names`),
and the format-level load/save API that dispatches through the family registry (`dispatch`)."""
