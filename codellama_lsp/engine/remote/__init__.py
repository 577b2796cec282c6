"""The servers that generate over HTTP: llama.cpp's llama-server and OpenAI-compatible ones."""
