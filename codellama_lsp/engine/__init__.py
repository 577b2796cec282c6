"""The engine: loads a model and turns infilling prompts into completions on one worker thread."""
