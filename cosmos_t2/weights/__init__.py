"""The model folder: where each weight file is, what it is, where it came from, and its hashes."""
