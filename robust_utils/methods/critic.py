"""Robust learning with an adversary critic (Matyasko & Chau, NeurIPS 2018).

A critic D learns to tell natural images of class k from adversarial images that the classifier
f assigns to k (eq. 4); the classifier is trained to be accurate and to make its own adversarial
examples, produced by the differentiable attack of eq. 7 (``attacks.high_confidence_unrolled``),
fool the critic (eq. 5), with an adversarial cycle-consistency term (eq. 6). Architecture,
losses and settings follow the authors' public code (the authors' code, github.com/aam-at/adversary_critic).

    Critic            the multi-class critic of Figure 3 (one binary logit per class).
    gradient_penalty  (||grad_x D_k(x)||_2 - 1)^2 per sample (Gulrajani et al. 2017, no interpolation).
    critic_loss       eq. 4 as binary cross-entropies, plus the two-sided penalty at real and
                      adversarial points.
    ClassConfidence   the per-class running mean of the classifier's confidence (the attack's C).
    AdversaryCritic   the classifier's training objective (eq. 5 + eq. 6) for ``train.fit``; it
                      also takes one critic step per batch (alternating updates).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core import store
from ..attacks.high_confidence import closest_target, high_confidence_unrolled


class Critic(nn.Module):
    """The multi-class adversary critic (Matyasko & Chau 2018, section 4, Figure 3).

    flatten -> + N(0, input_noise^2) -> [Linear(width) -> LeakyReLU(slope) -> + N(0, hidden_noise^2)]
    for each width -> Linear(num_classes). Output k is the logit of "x is a natural image of class
    k": the class label enters only in the last layer (one binary logit per class). The Gaussian
    noise is drawn in every forward pass, in training and at test, as in the authors' code
    (critic 1200-1200, noise std 0.1 on the input and 0.5 on the hidden layers, leaky ReLU 0.2,
    He (MSRA) initialisation).

    Args:
        in_features: input size after flattening (784 for MNIST).   widths: hidden widths.
        num_classes: K.   input_noise, hidden_noise: noise standard deviations (pixel scale for
        the input).   slope: negative slope of the leaky ReLU.
    Shapes: x (N, C, H, W) float32 -> logits (N, K) float32.
    Raises:
        ValueError: a negative noise level or slope.
    """

    def __init__(self, in_features: int = 784, widths: Sequence[int] = (1200, 1200), num_classes: int = 10,
                 input_noise: float = 0.1, hidden_noise: float = 0.5, slope: float = 0.2):
        super().__init__()
        if min(input_noise, hidden_noise, slope) < 0:
            raise ValueError(f"noise levels and slope must be >= 0, got {input_noise}, {hidden_noise}, {slope}")
        self.input_noise, self.hidden_noise, self.slope = float(input_noise), float(hidden_noise), float(slope)
        dims = [in_features, *widths]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], num_classes)
        for layer in [*self.hidden, self.out]:
            nn.init.kaiming_normal_(layer.weight, a=self.slope, nonlinearity="leaky_relu")
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        h = h + self.input_noise * torch.randn_like(h)
        for layer in self.hidden:
            h = F.leaky_relu(layer(h), self.slope)
            h = h + self.hidden_noise * torch.randn_like(h)
        return self.out(h)

    def extra_repr(self) -> str:
        return f"input_noise={self.input_noise}, hidden_noise={self.hidden_noise}, slope={self.slope}"


def _class_logit(critic: nn.Module, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    return critic(x).gather(1, classes[:, None]).squeeze(1)


def gradient_penalty(critic: nn.Module, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(||grad_x D_c(x)||_2 - 1)^2 per sample, differentiable w.r.t. the critic's parameters.

    The gradient-norm penalty of Gulrajani et al. (2017, eq. 3) evaluated at the given points
    themselves, not at interpolates (Matyasko & Chau's code applies it at the real and at the
    adversarial points). D_c is the critic's logit for class c of each sample.

    Args:
        critic: maps x -> (N, K) logits.   x: (N, C, H, W) float.   classes: (N,) int64.
    Returns:
        (N,) float penalties, >= 0; 0 where the input gradient has unit L2 norm.
    """
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        z = _class_logit(critic, xg, classes)
        (g,) = torch.autograd.grad(z.sum(), xg, create_graph=True)
    return (g.flatten(1).norm(dim=1) - 1.0).pow(2)


def critic_loss(critic: nn.Module, x_real: torch.Tensor, y_real: torch.Tensor, x_adv: torch.Tensor,
                y_adv: torch.Tensor, penalty: float = 10.0) -> torch.Tensor:
    """The critic's loss: eq. 4 of Matyasko & Chau (2018) with the two-sided gradient penalty.

    BCE(1, D_y(x_real)) + BCE(0, D_t(x_adv)) + penalty * [mean GP(x_adv, t) + mean GP(x_real, y)],
    batch means, D_k the critic's logit for class k, t = the classifier's prediction on x_adv
    (the class the adversarial image claims to be), GP = ``gradient_penalty``.

    Args:
        x_real: (N, C, H, W) natural images; y_real: (N,) int64 their labels.
        x_adv: (M, C, H, W) adversarial images (detached); y_adv: (M,) int64 the classifier's
            predictions on them.   penalty: lambda_grad >= 0 (the paper: 10).
    Returns:
        0-dim loss (nats), differentiable w.r.t. the critic's parameters only.
    """
    z_real = _class_logit(critic, x_real, y_real)
    loss = F.binary_cross_entropy_with_logits(z_real, torch.ones_like(z_real))
    gp = gradient_penalty(critic, x_real, y_real).mean()
    if x_adv.shape[0]:
        z_adv = _class_logit(critic, x_adv.detach(), y_adv)
        loss = loss + F.binary_cross_entropy_with_logits(z_adv, torch.zeros_like(z_adv))
        gp = gp + gradient_penalty(critic, x_adv, y_adv).mean()
    return loss + penalty * gp


class ClassConfidence:
    """Per-class running mean of the classifier's confidence: the attack's target confidence C.

    After each batch, for every class k predicted in the batch, m_k <- decay * m_k +
    (1 - decay) * mean{max_j p_j(x) : argmax p(x) = k} (the authors' code: decay 0.5, classes
    absent from the batch keep their value). The authors start the average during the
    pretraining epoch; here the first update sets m_k to the batch means (the batch-wide mean
    for classes absent from it), which a decay of 0.5 forgets within a few batches anyway.

    Args:
        num_classes: K.   decay: in [0, 1).
    Raises:
        ValueError: decay out of range.
    """

    def __init__(self, num_classes: int = 10, decay: float = 0.5):
        if not 0 <= decay < 1:
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
        self.decay = float(decay)
        self.mean = torch.full((num_classes,), math.nan)

    def update(self, probs: torch.Tensor) -> None:
        """Fold in a batch of softmax outputs probs (B, K) (detached)."""
        probs = probs.detach()
        conf, pred = probs.max(dim=1)
        k = self.mean.numel()
        mean = self.mean.to(probs.device)
        sums = torch.zeros(k, dtype=probs.dtype, device=probs.device).index_add_(0, pred, conf)
        counts = torch.bincount(pred, minlength=k).to(probs.dtype)
        present = counts > 0
        batch = torch.where(present, sums / counts.clamp_min(1), mean)
        if bool(torch.isnan(mean).all()):
            mean = torch.where(present, batch, conf.mean())
        else:
            mean = torch.where(present, self.decay * mean + (1 - self.decay) * batch, mean)
        self.mean = mean

    def __call__(self, classes: torch.Tensor) -> torch.Tensor:
        """C for each sample's target class, (N,) float, clamped into (0, 1)."""
        if bool(torch.isnan(self.mean).any()):
            raise RuntimeError("ClassConfidence has not seen a batch yet: call update() first")
        return self.mean.to(classes.device)[classes].clamp(1e-6, 1 - 1e-6)


class AdversaryCritic:
    """The classifier's objective of Matyasko & Chau (2018, eqs. 5-6), one critic step per call.

    For a mini-batch (x, y), with the classifier f in train mode:
      1. z = f(x); CE(z, y); update the running class confidence (``ClassConfidence``) with softmax(z).
      2. x_hat = ``high_confidence_unrolled``(f, x, t, C_t): t = ``closest_target`` from the
         prediction, C_t = the running confidence of t, 5 steps, overshoot 0.05.
      3. Critic step (alternating updates): ``critic_loss`` on (x, y) and (x_hat detached,
         f's prediction on it); one Adam step of the critic's own optimiser.
      4. Return CE + lam * BCE(1, D_t'(x_hat)) + lam_rec * rec_l2, where t' = f's prediction on
         x_hat and both terms are over the samples whose prediction the attack changed
         (the authors' filter); rec_l2 = mean ||x - A_f(stop_grad(x_hat); f(x)'s class, its
         clean confidence)||_2^2, the adversarial cycle-consistency of eq. 6 (squared L2, as
         their code). The attack stays a function of f's parameters, so the loss back-propagates
         through it (second order).

    Defaults are the paper's: lam 0.5 (MLP; 0.1 for LeNet-5), lam_rec 0.01, gradient penalty 10,
    critic Adam(lr 1e-3, betas (0.5, 0.999)), both learning rates halved every 40 epochs
    (``critic_lr_schedule``; the classifier's goes to ``fit(lr_schedule=...)``).

    Args:
        critic: a ``Critic`` on the classifier's device.   lam, lam_rec, penalty: loss weights >= 0.
        attack_steps, overshoot: of the unrolled attack.   confidence_decay: of ``ClassConfidence``.
        critic_optimizer: a ``train.make_optimizer`` spec.   critic_lr_schedule: a
            ``train.make_lr_schedule`` spec or None.
    Raises:
        ValueError: a negative weight, bad steps, optimiser or schedule.
    """

    name = "adversary_critic"

    def __init__(self, critic: Critic, lam: float = 0.5, lam_rec: float = 0.01, penalty: float = 10.0,
                 attack_steps: int = 5, overshoot: float = 0.05, confidence_decay: float = 0.5,
                 critic_optimizer: dict | None = None, critic_lr_schedule: dict | None = None):
        from ..training.loop import make_lr_schedule, make_optimizer  # train imports nothing from here

        if min(lam, lam_rec, penalty) < 0:
            raise ValueError(f"lam, lam_rec and penalty must be >= 0, got {lam}, {lam_rec}, {penalty}")
        if not isinstance(attack_steps, int) or attack_steps < 1:
            raise ValueError(f"attack_steps must be a positive int, got {attack_steps!r}")
        self.critic = critic
        self.lam, self.lam_rec, self.penalty = float(lam), float(lam_rec), float(penalty)
        self.attack_steps, self.overshoot = attack_steps, float(overshoot)
        self.critic_optimizer = dict(critic_optimizer or {"name": "adam", "lr": 1e-3, "betas": (0.5, 0.999)})
        self.critic_lr_schedule = critic_lr_schedule
        self.opt = make_optimizer(critic.parameters(), self.critic_optimizer)
        self.scheduler = make_lr_schedule(self.opt, critic_lr_schedule)
        num_classes = critic.out.out_features
        self.confidence = ClassConfidence(num_classes, confidence_decay)
        self._init = store.tensor_digest(*critic.state_dict().values())
        self._sums: dict[str, float] = {}
        self._batches = 0

    def cache_key(self) -> dict:
        return {"name": self.name, "critic": repr(self.critic), "critic_init": self._init, "lam": self.lam,
                "lam_rec": self.lam_rec, "penalty": self.penalty, "attack_steps": self.attack_steps,
                "overshoot": self.overshoot, "confidence_decay": self.confidence.decay,
                "critic_optimizer": self.critic_optimizer, "critic_lr_schedule": self.critic_lr_schedule}

    def _attack(self, model, x, targets, conf):
        return high_confidence_unrolled(model, x, targets, conf, steps=self.attack_steps, overshoot=self.overshoot)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        probs = logits.detach().softmax(dim=1)
        conf, pred = probs.max(dim=1)
        self.confidence.update(probs)
        targets = closest_target(model, x, pred)
        x_hat = self._attack(model, x, targets, self.confidence(targets))

        # critic step on the detached adversarial images
        x_hat_d = x_hat.detach()
        with torch.no_grad():
            pred_hat = model(x_hat_d).argmax(dim=1)
        self.opt.zero_grad(set_to_none=True)
        c_loss = critic_loss(self.critic, x, y, x_hat_d, pred_hat, self.penalty)
        c_loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

        # classifier terms on the samples whose prediction the attack changed
        changed = pred_hat != pred
        gan = rec = torch.zeros((), device=x.device)
        if bool(changed.any()):
            z_adv = _class_logit(self.critic, x_hat[changed], pred_hat[changed])
            gan = F.binary_cross_entropy_with_logits(z_adv, torch.ones_like(z_adv))
            if self.lam_rec > 0:
                x_rec = self._attack(model, x_hat_d[changed], pred[changed], conf[changed])
                rec = (x[changed] - x_rec).flatten(1).pow(2).sum(dim=1).mean()
        for name, value in (("critic_loss", c_loss), ("critic_gan", gan), ("cycle_l2", rec),
                            ("attack_changed", changed.float().mean()),
                            ("attack_l2", (x_hat_d - x).flatten(1).norm(dim=1).mean())):
            self._sums[name] = self._sums.get(name, 0.0) + float(value.detach())
        self._batches += 1
        return ce + self.lam * gan + self.lam_rec * rec

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Epoch means of the critic loss, the classifier's critic term, the cycle term, the share of
        the batch whose prediction the attack changed and the attack's mean L2 distance; steps the
        critic's learning-rate schedule."""
        out = {k: v / max(self._batches, 1) for k, v in self._sums.items()}
        self._sums, self._batches = {}, 0
        if self.scheduler is not None:
            self.scheduler.step()
        return out

    def state_dict(self) -> dict:
        """The critic's weights, its optimiser and LR schedule, and the class confidences C (for an exact resume)."""
        return {"critic": {k: v.detach().cpu() for k, v in self.critic.state_dict().items()},
                "confidence": self.confidence.mean.detach().cpu(), "optimizer": self.opt.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.critic.load_state_dict(state["critic"])
        self.confidence.mean = state["confidence"]
        if "optimizer" in state:  # checkpoints written before the optimiser was saved lack it
            self.opt.load_state_dict(state["optimizer"])
        if state.get("scheduler") is not None and self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])


__all__ = ["Critic", "gradient_penalty", "critic_loss", "ClassConfidence", "AdversaryCritic"]
