"""Config section ``baselines: {taming: {model, train, sample}, maskgit: {model, train, sample}}``.

Fair comparison at every scale: keys a baseline's ``model`` section leaves out (``layers``, ``dim``,
``heads``, ``text``) are taken from ``nuwa.model``, its ``sample`` section overlays ``nuwa.sample``,
and the codebook size comes from ``tokenizer.vqgan.model.n_embed`` (else ``nuwa.model.codebook``). So one paper-scale overlay that sizes
NUWA-Infinity sizes the baselines too; a baseline key set explicitly wins.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from nuwa.core.config import build, section
from nuwa.core.sampling import SamplingConfig
from nuwa.core.text import TextConfig
from nuwa.core.trainer import TrainConfig
from nuwa.core.transformer import TransformerSize

FAMILIES = ("taming", "maskgit")


@dataclass
class ModelConfig:
    """``baselines.<name>.model``; keys left out come from ``nuwa.model`` and the tokenizer's codebook."""

    layers: int
    dim: int
    heads: int
    n_embed: int                        # VQGAN codebook; the transformer adds one input token (SOS / [MASK])
    text: TextConfig | None             # null only for text-free benchmark models (the workflow's are text-conditional)
    window: tuple[int, int] = (8, 8)    # training token grid (h, w): 64x64 images, VQGAN f=8

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads}")
        if min(self.layers, *self.window) < 1 or self.n_embed < 2:
            raise ValueError("layers and window must be >= 1 and n_embed >= 2")


@dataclass
class TransformerConfig(ModelConfig):
    """A resolved baseline model, as stored in its checkpoint."""

    causal: bool = True  # Taming: causal; MaskGIT: bidirectional

    @property
    def special(self) -> int:
        """Id of the extra input token: start-of-sequence (Taming) or [MASK] (MaskGIT)."""
        return self.n_embed

    @property
    def length(self) -> int:
        return self.window[0] * self.window[1]


@dataclass
class FamilySection:
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    sample: dict = field(default_factory=dict)


@dataclass
class BaselinesSection:
    taming: dict = field(default_factory=dict)
    maskgit: dict = field(default_factory=dict)


def family_section(cfg: dict, name: str) -> FamilySection:
    build(BaselinesSection, section(cfg, "baselines"), "baselines")
    return build(FamilySection, section(cfg, f"baselines.{name}"), f"baselines.{name}")


def inherited(cfg: dict) -> dict:
    """The sizes NUWA-Infinity is configured with (``nuwa.model`` over the shared defaults) and the tokenizer's codebook."""
    names = {f.name for f in fields(TransformerSize)}
    shared_sizes = build(TransformerSize, {k: v for k, v in section(cfg, "nuwa.model").items() if k in names}, "nuwa.model")
    raw = {"layers": shared_sizes.layers, "dim": shared_sizes.dim, "heads": shared_sizes.heads,
           "n_embed": section(cfg, "tokenizer.vqgan.model").get("n_embed", shared_sizes.codebook)}
    if shared_sizes.text is not None:  # the baselines are always text-conditional (empty caption when unconditional)
        raw["text"] = asdict(shared_sizes.text)
    return raw


def model_section(cfg: dict, name: str) -> ModelConfig:
    raw = {"text": {}, **inherited(cfg), **family_section(cfg, name).model}
    return build(ModelConfig, raw, f"baselines.{name}.model")


def resolve_model(cfg: dict, name: str, causal: bool) -> TransformerConfig:
    return TransformerConfig(**vars(model_section(cfg, name)), causal=causal)


def train_config(cfg: dict, name: str) -> TrainConfig:
    return build(TrainConfig, family_section(cfg, name).train, f"baselines.{name}.train")


def sampling_config(cfg: dict, name: str) -> SamplingConfig:
    raw = {**section(cfg, "nuwa.sample"), **family_section(cfg, name).sample}
    return build(SamplingConfig, raw, f"baselines.{name}.sample (over nuwa.sample)")


def check_config(cfg: dict) -> None:
    """Build every dataclass of the ``baselines`` section; a bad value is a one-line UserError."""
    for name in FAMILIES:
        model_section(cfg, name)
        train_config(cfg, name)
        sampling_config(cfg, name)
