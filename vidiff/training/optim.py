"""Optimizers: AdamW, or Muon for the hidden weight matrices with AdamW for the rest.

Muon (Jordan et al. 2024, "Muon: an optimizer for hidden layers"; Liu et al. 2025, "Muon is scalable for LLM
training") replaces each hidden weight's momentum update by its nearest semi-orthogonal matrix (a few Newton-Schulz
iterations), so that every direction of the layer learns at the same rate. Embeddings, biases, norms and the layers
that read the input or write the output stay with AdamW.

Why not `torch.optim.Muon`: it takes only 2-D parameters (our convolutions are 5-D; Muon sees them as
(out, in * kernel) matrices, as Jordan's own code does) and runs Newton-Schulz in bf16, which CPUs without native bf16
run ~4x slower than fp32. `MuonAdamW` matches it on 2-D parameters to bf16's precision, and `torch.optim.AdamW` on its
AdamW group (tests/test_optim.py).
"""
from __future__ import annotations

import math
import re

import torch
from torch import nn

from ..errors import ConfigError

# Quintic Newton-Schulz coefficients (Jordan et al. 2024), the same as torch.optim.Muon's defaults
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)

# Layers that read the network's input or write its output: AdamW even though their weights are matrices
IO_LAYERS = ("conv_in.", "pixel_in.", "conv_out.", "pixel_out.")


def orthogonalize(g: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Newton-Schulz iterations towards the nearest semi-orthogonal matrix of the 2-D `g`, in fp32 (singular
    values end roughly in [0.7, 1.2], which is all Muon needs). Iterating on the small Gram matrix instead would
    save FLOPs but loses the small singular directions in fp32 (0.16 off on a random 16 x 16 matrix)."""
    a, b, c = NS_COEFFICIENTS
    x = g.float()
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = x @ x.T  # (m, m), m the shorter side
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return (x.T if tall else x).to(g.dtype)


class MuonAdamW(torch.optim.Optimizer):
    """One optimizer, two kinds of parameter groups: `{"muon": True}` groups take Muon steps (momentum, Nesterov,
    Newton-Schulz on the update seen as (out, -1), lr scaled by 0.2 * sqrt(max(out, in)) so that the same lr means
    the same update RMS as AdamW's, Liu et al. 2025), the others AdamW steps. One learning rate schedule drives both.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.99), eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.95, nesterov: bool = True, ns_steps: int = 5):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        nesterov=nesterov, ns_steps=ns_steps, muon=False)
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["muon"] and any(p.ndim < 2 for p in group["params"]):
                raise ValueError("Muon groups take weight matrices (2-D or more) only")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if group["muon"]:
                    if not state:
                        state["momentum_buffer"] = torch.zeros_like(p)
                    buf, mu = state["momentum_buffer"], group["momentum"]
                    buf.lerp_(p.grad, 1 - mu)
                    update = p.grad.lerp(buf, mu) if group["nesterov"] else buf
                    update = orthogonalize(update.reshape(p.shape[0], -1), group["ns_steps"])
                    p.mul_(1 - lr * wd)
                    p.add_(update.view_as(p), alpha=-lr * 0.2 * math.sqrt(max(update.shape)))
                else:
                    if not state:
                        state["step"] = torch.zeros((), dtype=torch.float32)
                        state["exp_avg"] = torch.zeros_like(p)
                        state["exp_avg_sq"] = torch.zeros_like(p)
                    (b1, b2), eps = group["betas"], group["eps"]
                    state["step"] += 1
                    n = state["step"].item()
                    state["exp_avg"].lerp_(p.grad, 1 - b1)
                    state["exp_avg_sq"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                    denom = (state["exp_avg_sq"] / (1 - b2 ** n)).sqrt_().add_(eps)
                    p.mul_(1 - lr * wd)
                    p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - b1 ** n))
        return loss


def muon_groups(net: nn.Module) -> list[dict]:
    """Split a network's parameters: hidden weight matrices (linear and conv weights, not embeddings, not the
    input and output layers) for Muon, everything else for AdamW."""
    embeddings = {id(m.weight) for m in net.modules() if isinstance(m, nn.Embedding)}
    hidden, rest = [], []
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim >= 2 and id(p) not in embeddings and not name.startswith(IO_LAYERS):
            hidden.append(p)
        else:
            rest.append(p)
    return [{"params": hidden, "muon": True}, {"params": rest, "muon": False}]


def match_parameters(net: nn.Module, patterns: tuple[str, ...] | list[str]) -> dict[str, bool]:
    """Per parameter name: whether it matches one of `patterns` (regular expressions, `re.search`: "temporal"
    matches any name containing it). A pattern that matches no parameter is an error, not a silently frozen network."""
    try:
        compiled = [re.compile(pat) for pat in patterns]
    except re.error as e:
        raise ConfigError(f"train.trainable: {e.pattern!r} is not a regular expression ({e})") from None
    names = [name for name, _ in net.named_parameters()]
    for pat, rx in zip(patterns, compiled):
        if not any(rx.search(n) for n in names):
            raise ConfigError(f"train.trainable: {pat!r} matches none of the network's {len(names)} parameter names "
                              f"(e.g. {names[0]!r}, {names[len(names) // 2]!r})")
    return {name: any(rx.search(name) for rx in compiled) for name in names}


def select_trainable(net: nn.Module, patterns: tuple[str, ...] | list[str], rest_lr_scale: float = 0.0
                     ) -> tuple[int, int]:
    """Freeze every parameter whose name matches none of `patterns` (`match_parameters`), unless `rest_lr_scale` > 0
    (they then train at that share of the lr: `build_optimizer`); no patterns trains everything. Returns the tensors
    and parameters that train at the full lr."""
    if not patterns:
        return sum(1 for _ in net.parameters()), sum(p.numel() for p in net.parameters())
    matched = match_parameters(net, patterns)
    count = size = 0
    for name, p in net.named_parameters():
        if not rest_lr_scale:
            p.requires_grad_(matched[name])
        count += matched[name]
        size += p.numel() if matched[name] else 0
    return count, size


def scale_rest(net: nn.Module, groups: list[dict], patterns, scale: float) -> list[dict]:
    """Split each parameter group into the parameters matching `patterns` and the rest, which get
    `lr_scale: scale` (the training loop multiplies its lr by it); the full-lr groups come first."""
    matched = match_parameters(net, patterns)
    full_ids = {id(p) for name, p in net.named_parameters() if matched[name]}
    full, rest = [], []
    for g in groups:
        for part, keep in ((full, True), (rest, False)):
            params = [p for p in g["params"] if (id(p) in full_ids) == keep]
            if params:
                part.append({**g, "params": params, "lr_scale": 1.0 if keep else scale})
    return full + rest


def build_optimizer(net: nn.Module, tc) -> torch.optim.Optimizer:
    """The optimizer `train.optimizer` names, at lr `train.lr` (the schedule sets it every step, times a group's
    `lr_scale`: `train.rest_lr_scale` for the parameters `train.trainable` does not name)."""
    if tc.optimizer == "muon":
        groups = muon_groups(net)
    else:
        groups = [{"params": [p for p in net.parameters() if p.requires_grad]}]
    if tc.trainable and tc.rest_lr_scale:
        groups = scale_rest(net, groups, tc.trainable, tc.rest_lr_scale)
    if tc.optimizer == "muon":
        return MuonAdamW(groups, lr=tc.lr, weight_decay=tc.weight_decay, betas=(0.9, 0.99))
    return torch.optim.AdamW(groups, lr=tc.lr, weight_decay=tc.weight_decay, betas=(0.9, 0.99))
