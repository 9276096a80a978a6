"""Answering: the gate, sentence reading, the extractive and generative answerers, prompts, citations."""
