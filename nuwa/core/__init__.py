"""The shared core: errors, io, config, checkpoints, the training loop, the model-family protocol,
sampling, text and the one transformer core. It imports nothing else of the suite; nuwa.model,
baselines/ and metrics/ build on it (tests/import_graph.py checks the rule)."""
