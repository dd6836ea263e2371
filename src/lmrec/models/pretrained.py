"""The self-describing output of ``lmrec pretrain``: what a transfer needs and nothing domain-specific.

A folder with ``artifact.json`` (kind, lmrec version, the model config, the text encoder and its
fingerprint, the domains seen with their sizes, the pretraining run's summary) and ``weights.safetensors``
(the adaptor and sequence-encoder weights). Item vectors are not stored: they belong to the domains, and
a target domain's items are encoded with the same encoder at transfer time; the fingerprint check makes
sure "the same encoder" really is.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from lmrec import __version__
from lmrec.errors import ArtifactError
from lmrec.fsutil import atomic_write_text

KIND = "lmrec-pretrained-textseq"
META = "artifact.json"
WEIGHTS = "weights.safetensors"


@dataclass
class PretrainedArtifact:
    config: dict[str, Any]  # TextSeqRecConfig fields (architecture + pretraining schedule)
    encoder_fingerprint: str
    weights: dict[str, torch.Tensor]
    domains: list[dict[str, Any]] = field(default_factory=list)  # name, items, users, events, ...
    summary: dict[str, Any] = field(default_factory=dict)  # pretraining run: epochs, seconds, valid metrics

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / f".{WEIGHTS}.tmp"
        save_file({k: v.detach().cpu().contiguous() for k, v in self.weights.items()}, str(tmp))
        os.replace(tmp, path / WEIGHTS)
        meta = {"kind": KIND, "lmrec_version": __version__, "config": self.config,
                "encoder": self.config.get("encoder"), "encoder_fingerprint": self.encoder_fingerprint,
                "domains": self.domains, "summary": self.summary,
                "trainable_params": int(sum(v.numel() for v in self.weights.values()))}
        atomic_write_text(path / META, json.dumps(meta, indent=2))  # last: its presence marks a complete artifact
        return path

    @classmethod
    def load(cls, path: str | Path) -> PretrainedArtifact:
        path = Path(path)
        if not (path / META).is_file() or not (path / WEIGHTS).is_file():
            raise ArtifactError(f"{path} is not a pretrained artifact (expected {META} and {WEIGHTS}; "
                              "make one with the pretrain job: lmrec.pipeline.pretrain, or `lmrec pretrain`)")
        try:
            meta = json.loads((path / META).read_text())
            if meta.get("kind") != KIND:
                raise ArtifactError(f"{path / META}: kind {meta.get('kind')!r} is not {KIND!r}")
            config, fingerprint = meta["config"], meta["encoder_fingerprint"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, AttributeError) as exc:
            raise ArtifactError(f"{path / META}: not a valid artifact description ({type(exc).__name__}: {exc})") from None
        try:
            weights = load_file(str(path / WEIGHTS))
        except Exception as exc:  # truncated or not safetensors: the library raises its own types
            raise ArtifactError(f"{path / WEIGHTS}: unreadable ({' '.join(str(exc).split())[:200]})") from None
        return cls(config, fingerprint, weights, meta.get("domains", []), meta.get("summary", {}))

    @property
    def domain_names(self) -> list[str]:
        return [d["name"] for d in self.domains]
