"""Baselines of Tables 2 and 4: Taming Transformer (``baselines.taming``) and MaskGIT (``baselines.maskgit``).

Both are :class:`nuwa.core.family.Family` objects (``FAMILY``) trained and sampled by the same
``nuwa train/generate --model taming|maskgit`` commands as NUWA-Infinity; see docs/baselines.md.
"""
