"""Question to answer: retrievers, fusion, prompts, LLM adapters, citation checking, the Answerer."""
