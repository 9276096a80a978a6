"""Chat models: provisioning the local GGUF, the llama.cpp and OpenAI-compatible runtimes, their errors."""
