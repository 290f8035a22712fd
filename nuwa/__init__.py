"""NUWA-Infinity reproduction suite. Rooms (imports run one way, tests/import_graph.py checks it):

* ``nuwa.core``     shared machinery: errors, io, config, checkpoints, the training loop, the model-family
  protocol, sampling, text, sample folders, the one transformer core. Imports nothing else of the suite.
* ``nuwa.model``    NUWA-Infinity as the paper names it (ADC, NCP, decoder, local decoders, Algorithms 1
  and 2). Imports only the core; so do ``baselines`` (Taming, MaskGIT) and ``metrics``.
* the rest, on top: ``nuwa.commands`` (the ``nuwa`` CLI), ``nuwa.data``, ``nuwa.tokenizer``,
  ``nuwa.report``, ``nuwa.bench`` and ``nuwa.plan`` (the workflow's plan).
"""
