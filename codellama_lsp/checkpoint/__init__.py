"""Finding a model's files (local folder, cache or hub, each file checked) and its tokenizer."""
