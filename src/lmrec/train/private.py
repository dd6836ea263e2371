"""Differentially private training (DP-SGD) with user-level accounting, on Opacus.

What is private: each step samples users (Poisson, every user independently with probability ``q``), one
training example per sampled user; each user's gradient is clipped to norm ``C`` and Gaussian noise of
standard deviation ``sigma * C`` is added to the sum. So the (epsilon, delta) the accountant reports bounds
what the trained weights reveal about any one user's whole history, not about one interaction.

Division of labour: per-user gradients are computed here (``torch.func``: ``vmap`` of ``grad`` where the
loss has a per-example form whose shapes do not depend on the data, else an exact loop over the batch's
examples); Opacus' ``DPOptimizer`` clips, adds the noise and averages; Opacus' accountants (RDP by default,
PRV as an option) turn (sigma, q, steps) into epsilon and, for a target epsilon, calibrate sigma.

Not covered by the guarantee (docs/privacy.md says so too): the catalogue (which items exist and which
occur in training) is treated as public; choosing the best epoch on validation data uses users' held-out
items and is not accounted.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import fields
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from lmrec.data.batching import UserSampling, take_rows
from lmrec.errors import ConfigError
from lmrec.progress import logger


class PrivacyConfig(BaseModel):
    """``privacy.epsilon`` (with ``privacy.delta``) or ``privacy.noise_multiplier`` turns DP-SGD on."""

    model_config = ConfigDict(extra="forbid")
    epsilon: float | None = Field(None, gt=0, description="target epsilon over the whole run (user level); the "
                                  "noise is calibrated to reach it at the last planned step")
    delta: float | None = Field(None, gt=0, lt=1, description="delta; default 0.1 / number of users (it must be "
                                "below 1 / number of users)")
    noise_multiplier: float | None = Field(None, ge=0, description="instead of epsilon: noise std / clipping "
                                           "bound (epsilon is then reported, not targeted)")
    max_grad_norm: float = Field(1.0, gt=0, description="per-user gradient clipping bound C")
    accountant: Literal["rdp", "prv"] = Field("rdp", description="Opacus accountant: Renyi DP or PRV")
    per_sample: Literal["auto", "vmap", "loop"] = Field(
        "auto", description="how per-user gradients are computed: vmap (fast; needs a loss with a per-example "
        "form), loop (any loss, exact, slower), auto (vmap where possible)")
    per_sample_chunk: int = Field(64, ge=1, description="users whose gradients vmap computes at once: memory "
                                  "grows with it (a full softmax holds a catalogue-sized tensor per user)")

    @model_validator(mode="after")
    def _one_way(self) -> PrivacyConfig:
        if self.epsilon is not None and self.noise_multiplier is not None:
            raise ValueError("give privacy.epsilon (the noise is calibrated to it) or privacy.noise_multiplier, "
                             "not both")
        if self.delta is not None and not self.enabled:
            raise ValueError("privacy.delta alone does nothing: also give privacy.epsilon or privacy.noise_multiplier")
        return self

    @property
    def enabled(self) -> bool:
        return self.epsilon is not None or self.noise_multiplier is not None


class PrivateTraining:
    """DP-SGD for one run of the Trainer: ``wrap`` the optimiser, then per step ``backward`` (sets every
    trainable parameter's ``grad_sample``), the wrapped optimiser's ``step``, and ``stepped``."""

    def __init__(self, config: PrivacyConfig, data: Any, loss: Any, planned_steps: int,
                 steps_done: int = 0, noise_multiplier: float | None = None):
        sampling = getattr(data, "sampling", None)
        if not isinstance(sampling, UserSampling):
            raise ConfigError("private training needs batches that sample users (one example per sampled user); "
                              "this model's training data does not: DP-SGD works with the sequence models "
                              "(sasrec, gru4rec, bert4rec, textseq)")
        if getattr(loss, "mixes_examples", False):
            raise ConfigError(f"loss {getattr(loss, 'name', type(loss).__name__)!r} makes one user's loss depend "
                              "on other users in the batch, which per-user clipping cannot bound; use loss=ce "
                              "(or bpr / bce) with privacy")
        self.config, self.sampling, self.loss = config, sampling, loss
        n = sampling.n_users
        self.delta = config.delta if config.delta is not None else 0.1 / n
        if self.delta >= 1 / n:
            raise ConfigError(f"privacy.delta={self.delta:g} is not below 1 / number of users (1/{n}): a "
                              "mechanism that publishes one user's data outright meets it; use a smaller delta")
        self.planned_steps = planned_steps
        from opacus.accountants import create_accountant
        from opacus.accountants.utils import get_noise_multiplier

        # steps known to fit the target epsilon without asking the accountant (which costs ~10 ms a call)
        self._within_budget = 0
        if noise_multiplier is not None:  # resuming: the noise the run started with
            self.noise_multiplier = noise_multiplier
        elif config.noise_multiplier is not None:
            self.noise_multiplier = config.noise_multiplier
        else:
            self.noise_multiplier = get_noise_multiplier(
                target_epsilon=config.epsilon, target_delta=self.delta, sample_rate=sampling.sample_rate,
                steps=planned_steps, accountant=config.accountant)
            self._within_budget = planned_steps
        self.accountant = create_accountant(config.accountant)
        if steps_done:
            self.accountant.history = [(self.noise_multiplier, sampling.sample_rate, steps_done)]
        self.steps = steps_done
        self._vmap_failed = False
        logger.info("DP-SGD: %d users, sample rate %.4g, noise multiplier %.4g, clipping %.3g, delta %.3g, "
                    "%d planned steps", n, sampling.sample_rate, self.noise_multiplier, config.max_grad_norm,
                    self.delta, planned_steps)

    def wrap(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        from opacus.optimizers import DPOptimizer

        # the loss of a batch is the mean over its expected number of users (Opacus divides by it, not by
        # the sampled count, which would itself depend on who is in the batch)
        expected = max(1, round(self.sampling.sample_rate * self.sampling.n_users))
        return DPOptimizer(optimizer, noise_multiplier=self.noise_multiplier,
                           max_grad_norm=self.config.max_grad_norm, expected_batch_size=expected)

    def budget_left(self) -> bool:
        """False once one more step would take epsilon past the target (never, with noise calibrated to the
        planned steps, unless a resumed run asks for more epochs than were planned)."""
        if self.config.epsilon is None or self.steps < self._within_budget:
            return True
        from opacus.accountants import create_accountant

        probe = create_accountant(self.config.accountant)
        probe.history = [(self.noise_multiplier, self.sampling.sample_rate, self.steps + 1)]
        return probe.get_epsilon(self.delta) <= self.config.epsilon * 1.01

    def backward(self, module: nn.Module, batch: Any) -> float | None:
        """Set ``p.grad_sample`` ``[users in batch, *p.shape]`` on every trainable parameter; returns the
        batch's mean loss (None for a batch nobody was sampled into)."""
        params = {n: p for n, p in module.named_parameters() if p.requires_grad}
        if len(batch) == 0:
            for p in params.values():
                p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
            return None
        grads, losses = self._per_example(module, batch, params)
        for name, p in params.items():
            p.grad_sample = grads[name]
        return float(losses.mean())

    def stepped(self) -> None:
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sampling.sample_rate)
        self.steps += 1

    def record(self) -> dict[str, Any]:
        """What the bundle records: the guarantee and how it was obtained."""
        spent = (math.inf if self.noise_multiplier == 0 else
                 float(self.accountant.get_epsilon(self.delta)) if self.steps else 0.0)
        return {"unit": "user", "epsilon": spent, "target_epsilon": self.config.epsilon, "delta": self.delta,
                "noise_multiplier": self.noise_multiplier, "max_grad_norm": self.config.max_grad_norm,
                "sample_rate": self.sampling.sample_rate, "users": self.sampling.n_users, "steps": self.steps,
                "accountant": self.config.accountant, "mechanism": "DP-SGD (Opacus DPOptimizer), Poisson "
                "sampling of users, one example per sampled user"}

    # --- per-user gradients ------------------------------------------------------------------------------
    def _per_example(self, module: nn.Module, batch: Any,
                     params: dict[str, nn.Parameter]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        mode = self.config.per_sample
        example = getattr(self.loss, "example", None)
        if mode == "vmap" and example is None:
            raise ConfigError(f"privacy.per_sample=vmap needs a loss with a per-example form; "
                              f"{getattr(self.loss, 'name', type(self.loss).__name__)!r} has none (use loop)")
        if mode != "loop" and example is not None and not self._vmap_failed:
            try:
                return vmap_example_grads(module, example, batch, params, self.config.per_sample_chunk)
            except RuntimeError as exc:  # an op without a batching rule: fall back once, for the whole run
                if mode == "vmap":
                    raise
                self._vmap_failed = True
                logger.info("DP-SGD: vmap cannot batch this model (%s); per-user gradients by a loop instead",
                            " ".join(str(exc).split())[:160])
        return loop_example_grads(module, self.loss, batch, params)


def loop_example_grads(module: nn.Module, loss: Callable[[nn.Module, Any], torch.Tensor], batch: Any,
                       params: dict[str, nn.Parameter]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Each example's gradient by its own backward pass (any loss and model; exact)."""
    names, tensors = list(params), list(params.values())
    grads: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    losses = []
    for i in range(len(batch)):
        value = loss(module, take_rows(batch, slice(i, i + 1)))
        got = torch.autograd.grad(value, tensors, allow_unused=True)
        for n, p, g in zip(names, tensors, got):
            grads[n].append(torch.zeros_like(p) if g is None else g)
        losses.append(value.detach())
    return {n: torch.stack(g) for n, g in grads.items()}, torch.stack(losses)


class _ExampleLoss(nn.Module):
    """``forward(*fields)`` = the loss of a one-row batch: ``functional_call`` swaps the network's weights
    only during a module call, and the losses call the network's methods, not ``forward``."""

    def __init__(self, net: nn.Module, example: Callable[[nn.Module, Any], torch.Tensor], batch_type: type):
        super().__init__()
        self.net, self.example, self.batch_type = net, example, batch_type

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        names = [f.name for f in fields(self.batch_type)]
        return self.example(self.net, self.batch_type(**{n: t.unsqueeze(0) for n, t in zip(names, tensors)}))


def vmap_example_grads(module: nn.Module, example: Callable[[nn.Module, Any], torch.Tensor], batch: Any,
                       params: dict[str, nn.Parameter], chunk: int | None = None,
                       ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """All examples' gradients: ``vmap(grad(loss of one example))``, ``chunk`` examples at a time (None: all at
    once), dropout drawn per example."""
    from torch.func import functional_call, grad_and_value, vmap

    take_rows(batch, slice(0, 1))  # checks that it is a batch of tensors
    wrapper = _ExampleLoss(module, example, type(batch))
    trainable = {f"net.{n}": p.detach() for n, p in params.items()}

    def one(weights: dict[str, torch.Tensor], *tensors: torch.Tensor) -> torch.Tensor:
        return functional_call(wrapper, weights, tensors, strict=False)

    tensors = [getattr(batch, f.name) for f in fields(batch)]
    with warnings.catch_warnings():  # ops without a batching rule run one example at a time: slower, still exact
        warnings.filterwarnings("ignore", message="There is a performance drop")
        grads, losses = vmap(grad_and_value(one), in_dims=(None, *[0] * len(tensors)),
                             randomness="different", chunk_size=chunk)(trainable, *tensors)
    return {n: grads[f"net.{n}"] for n in params}, losses
