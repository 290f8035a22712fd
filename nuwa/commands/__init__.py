"""The `nuwa` command line on top of everything: the entry point (cli), train, generate, config,
samples, the model registry (families) and user inputs (inputs). nuwa.data, nuwa.tokenizer,
nuwa.report, nuwa.bench and metrics add their own command groups (their ``cli`` / ``register``)."""
