"""The backbones by name: a reference network (inception, clip, i3d) or a proxy checkpoint.

The interface every backbone implements is metrics.backbone.Backbone; this module is the one that
knows them all, so the implementations never import it.
"""
from __future__ import annotations

from pathlib import Path

from metrics.backbone import Backbone, Kind
from nuwa.core.errors import UserError

REFERENCE = {"image": "inception", "clip": "clip", "video": "i3d"}


def default_spec(kind: Kind, backbone: str, workdir: str | Path) -> str:
    """The backbone the config picks: a reference name, or the proxy checkpoint the workflow trains."""
    return REFERENCE[kind] if backbone == "reference" else str(Path(workdir) / "proxies" / f"{kind}.pt")


def load_backbone(spec: str, kind: Kind, cfg) -> Backbone:
    """``spec`` is a reference name (inception, clip, i3d) or a proxy checkpoint path; ``cfg`` is MetricsConfig."""
    if spec == "inception":
        from metrics.inception import InceptionBackbone
        backbone: Backbone = InceptionBackbone.load(cfg.inception)
    elif spec == "clip":
        from metrics.clip import reference_clip
        backbone = reference_clip(cfg.clip)
    elif spec == "i3d":
        from metrics.i3d import I3DBackbone
        backbone = I3DBackbone.load(cfg.i3d, cfg.fvd_frames)
    elif Path(spec).suffix in (".pt", ".pth", ".ckpt") or Path(spec).is_file():
        from metrics.proxies import load_proxy
        backbone = load_proxy(spec, kind)
    else:
        raise UserError(f"unknown backbone {spec!r}: use inception, clip, i3d or a proxy checkpoint from `nuwa eval train-backbone`")
    return backbone
