"""Greedy local-search black-box attack (Narodytska & Kasiviswanathan 2016, LocSearchAdv)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.checks import check_images, check_labels, check_number, check_positive_int

# the normalised pixel box of Foolbox's LocalSearchAttack for pixel bounds [0, 1]: u = x - 0.5
_LB, _UB = -0.5, 0.5


def cyclic_update(u: torch.Tensor, r: float) -> torch.Tensor:
    """The cyclic update of LocSearchAdv on normalised values u in [LB, UB] = [-0.5, 0.5].

    r * u, wrapped back into the box once: + (UB - LB) below LB, - (UB - LB) above UB (one wrap
    suffices for 0 <= r <= 2). E.g. r = 1.5: -0.5 -> 0.25, 0.5 -> -0.25, 0.2 -> 0.3.
    """
    v = r * u
    return torch.where(v < _LB, v + (_UB - _LB), torch.where(v > _UB, v - (_UB - _LB), v))


def _forward_chunks(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits of x, forwarded ``batch_size`` images at a time."""
    return torch.cat([model(chunk) for chunk in x.split(batch_size)])


def _check_arguments(x, y, p, r, d, t, R, max_candidates, batch_size, generator, select) -> tuple[float, float]:
    """Validate ``local_search``'s arguments before the model is called; returns (p, r) as floats."""
    check_images(x)
    if x.dim() != 4:
        raise ValueError(f"x must be (N, C, H, W), got shape {tuple(x.shape)}")
    check_labels(y, x.shape[0])
    p = check_number(p, "p")
    if not p > 0:
        raise ValueError(f"p must be > 0, got {p}")
    r = check_number(r, "r")
    if not 0 <= r <= 2:
        raise ValueError(f"r must satisfy 0 <= r <= 2, got {r}")
    if not isinstance(d, int) or isinstance(d, bool) or d < 0:
        raise ValueError(f"d must be an int >= 0, got {d!r}")
    check_positive_int(t, "t")
    check_positive_int(R, "R")
    check_positive_int(max_candidates, "max_candidates")
    check_positive_int(batch_size, "batch_size")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if select not in ("highest", "lowest"):
        raise ValueError(f"unknown select {select!r}; valid: 'highest', 'lowest'")
    return p, r


def _probe_scores(model, flat, active, locs, valid, ya, p, batch_size, shape) -> torch.Tensor:
    """Step 2: the softmax probability of the true class for every probe (pixel set to p * sign(u),
    all channels), (n, k); 0 where the location is not a candidate."""
    channels, h, w = shape
    n, k = locs.shape
    scores = torch.zeros(n, k, dtype=flat.dtype, device=flat.device)
    rows, cols = valid.nonzero(as_tuple=True)
    for start in range(0, rows.numel(), batch_size):
        rb, cb = rows[start:start + batch_size], cols[start:start + batch_size]
        lb = locs[rb, cb]
        probe = flat[active[rb]]  # (b, C, HW), a copy
        ar = torch.arange(rb.numel(), device=flat.device)
        probe[ar, :, lb] = 0.5 + p * torch.sign(probe[ar, :, lb] - 0.5)
        prob = model(probe.view(-1, channels, h, w)).softmax(dim=1)
        scores[rb, cb] = prob.gather(1, ya[rb, None]).squeeze(1).to(flat.dtype)
    return scores


def _neighbourhoods(sr, il, n, keep, hw, h, w, d, device) -> torch.Tensor:
    """Step 5: the (2d + 1) x (2d + 1) neighbourhoods of the selected pixels of the images kept, (n_kept, HW) bool."""
    sel_mask = torch.zeros(n, hw, dtype=torch.bool, device=device)
    sel_mask[sr, il] = True
    grown = F.max_pool2d(sel_mask[keep].view(-1, 1, h, w).float(), 2 * d + 1, stride=1, padding=d)
    return grown.view(-1, hw) > 0


def local_search(model: nn.Module, x: torch.Tensor, y: torch.Tensor, p: float = 10.0, r: float = 1.5, d: int = 5,
                 t: int = 5, R: int = 150, max_candidates: int = 128, batch_size: int = 1024,
                 generator: torch.Generator | None = None, *, select: str = "highest",
                 return_success: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Greedy local-search black-box attack (Narodytska & Kasiviswanathan 2016, "Simple black-box
    adversarial perturbations for deep networks", Algorithm LocSearchAdv), untargeted, following
    Foolbox's ``LocalSearchAttack`` (1.8; same defaults in 2.x).

    Only the model's outputs are used (no gradients). Pixels are handled in Foolbox's normalised
    space u = (x - (lo + hi) / 2) / (hi - lo) = x - 0.5 for bounds [0, 1], with box
    [LB, UB] = [-0.5, 0.5]. Per image, the initial candidate set is a random int(0.1 * H * W) of
    the H * W pixel locations, capped at ``max_candidates`` (78 for 28 x 28). Each round, for
    every image still classified as y:

    1. at most ``max_candidates`` locations are re-drawn at random from the candidate set;
    2. for each, a probe copy of the current image I_i has that pixel (all channels) set to
       p * sign(u) (outside the box on purpose; probes are only scored, never returned) and is
       scored by the softmax probability of the true class y;
    3. t locations are selected by score (all of them if fewer than t; see ``select``), and on
       I_i every channel of those pixels gets the cyclic update u <- r * u, wrapped into
       [LB, UB] (+ (UB - LB) below LB, - (UB - LB) above UB);
    4. I_i (back in [0, 1]) is forwarded once: if its top-1 prediction differs from y the image
       is adversarial and its attack stops, keeping I_i;
    5. otherwise the next candidate set is the union of the (2d + 1) x (2d + 1) neighbourhoods
       of the t selected pixels, clipped to the image (a boolean (n, H * W) mask dilated with
       ``max_pool2d``).

    The criterion is top-1 misclassification of the true label y. Images misclassified at the
    start are returned unchanged (Foolbox does not attack them). Images not fooled after R rounds
    are returned as their last iterate I_i, the attacker's strongest attempt (Foolbox returns
    no adversarial for them): check ``model(x_adv).argmax(1) != y`` for success.

    The selection rule: Foolbox 1.8 (and 2.x before bethgelab/foolbox PR #396, Oct 2019) keeps
    the t LOWEST probe scores (``np.argsort(scores)[:t]``); the maintainers confirmed this was a
    bug (issue #237) and later releases keep the t HIGHEST (``np.argsort(scores)[-t:]``). The
    probe pushes a pixel far along sign(u) while the cyclic update with r = 1.5 flips every
    pixel with |u| > 1/3 (all saturated MNIST pixels) to the other sign, so the "lowest" rule
    tends to pick pixels whose update helps the true class: on a small MNIST MLP it fools almost
    no image in 150 rounds, while "highest" fools nearly all within about 10 rounds.
    ``select="highest"`` (default) is the fixed rule, ``select="lowest"`` reproduces 1.8.

    Choices of this implementation: all images are attacked at once, only the still-active ones
    each round; the probe images (n_active * up to ``max_candidates``) are forwarded in chunks
    of ``batch_size`` images; variable-size candidate sets are handled with masks (random keys
    masked to -inf, then ``topk``); ties in the scores are broken by ``topk``. Pixel locations
    are row-major (h * W + w); Foolbox swaps the two axes, which only matters for non-square
    images. Everything runs under ``torch.no_grad()`` (so it also works inside
    ``torch.inference_mode``) and no backward is ever called. Pixels never selected keep x's
    exact values (the update is written only at the selected pixels, as 0.5 + cyclic(x - 0.5)
    clamped to [0, 1]). An initial candidate set is never empty (one location when
    H * W < 10, where Foolbox would draw none).

    Args:
        model: maps x -> logits (N, K); its train/eval mode is left as the caller set it. It is
            called on x, on probe images with one pixel outside [0, 1] (values 0.5 +- p; 0.5
            where x = 0.5), and on the iterates; a stochastic model draws its own randomness in
            each call (that is the model's business).
        x: (N, C, H, W) float in [0, 1].   y: (N,) int64 true labels.
        p: > 0, the probe value p * sign(u) in normalised units (default 10).
        r: 0 <= r <= 2, the cyclic perturbation factor (default 1.5).
        d: int >= 0, half side of the square neighbourhood for the next candidate set (default 5).
        t: int >= 1, pixel locations perturbed per round (default 5).
        R: int >= 1, maximum number of rounds (default 150).
        max_candidates: int >= 1, cap on the initial candidate set and on the locations probed
            per image per round (Foolbox: 128).
        batch_size: int >= 1, images per forward call (probes and iterates), to bound memory.
        generator: a torch.Generator for every random draw of the attack (reproducible results
            for a deterministic model); None uses torch's global generator. Its numbers are
            drawn on the generator's device and moved to x's device.
        select: "highest" (default; later Foolbox, bug fixed) or "lowest" (Foolbox 1.8): which
            t probe scores are kept.
        return_success: also return the attack's own count of its successes.
    Returns:
        (N, C, H, W) images in [0, 1]: adversarial ones where the attack succeeded, x itself for
        images misclassified at the start, the last iterate otherwise. At most t pixel locations
        change per round used. A new, detached tensor of x's dtype and device.
    With ``return_success``: (x_adv, success), success (N,) bool: misclassified by the attack's own
        forward pass (at the start, or on the iterate where it stopped); for a random model, on the
        attack's own draw.
    Raises:
        ValueError: x not a float (N, C, H, W) tensor in [0, 1], y not int64 (N,), p <= 0,
            r outside [0, 2], d not an int >= 0, t, R, max_candidates or batch_size not a
            positive int, unknown select (all checked before the model is called).
    """
    p, r = _check_arguments(x, y, p, r, d, t, R, max_candidates, batch_size, generator, select)
    x = x.detach()
    n_img, channels, h, w = x.shape
    hw = h * w
    device = x.device
    rng_device = generator.device if generator is not None else torch.device("cpu")

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=rng_device).to(device)

    with torch.no_grad():
        x_adv = x.clone(memory_format=torch.contiguous_format)
        success = torch.zeros(n_img, dtype=torch.bool, device=device)
        if n_img == 0 or hw == 0:
            return (x_adv, success) if return_success else x_adv
        flat = x_adv.view(n_img, channels, hw)  # shares storage with x_adv
        start = _forward_chunks(model, x, batch_size).argmax(dim=1) == y
        success = ~start
        active = start.nonzero().squeeze(1)
        n0 = min(max(int(0.1 * hw), 1), max_candidates, hw)
        cand = torch.zeros(active.numel(), hw, dtype=torch.bool, device=device)
        cand.scatter_(1, uniform(active.numel(), hw).topk(n0, dim=1).indices, True)
        k = min(max_candidates, hw)
        for _ in range(R):
            n = active.numel()
            if n == 0:
                break
            ya = y[active]
            # 1. at most k locations per image, drawn at random from its candidate set
            keys = uniform(n, hw).masked_fill_(~cand, -math.inf)
            locs = keys.topk(k, dim=1).indices  # (n, k); the candidates come first
            valid = cand.gather(1, locs)  # (n, k)
            # 2. score the probes: pixel set to p * sign(u), all channels
            scores = _probe_scores(model, flat, active, locs, valid, ya, p, batch_size, (channels, h, w))
            # 3. the t highest / lowest scores get the cyclic update on the current image
            key = (scores if select == "highest" else -scores).masked_fill_(~valid, -math.inf)
            chosen = key.topk(min(t, k), dim=1).indices  # (n, t')
            sel_locs = locs.gather(1, chosen)
            sel_valid = valid.gather(1, chosen)
            sr, sc = sel_valid.nonzero(as_tuple=True)
            ir, il = active[sr], sel_locs[sr, sc]
            u = flat[ir, :, il] - 0.5  # (m, C)
            flat[ir, :, il] = (cyclic_update(u, r) + 0.5).clamp_(0.0, 1.0)
            # 4. one forward pass of the perturbed images
            fooled = _forward_chunks(model, x_adv[active], batch_size).argmax(dim=1) != ya
            success[active] = fooled
            # 5. the neighbourhoods of the selected pixels become the next candidate sets
            keep = ~fooled
            cand = _neighbourhoods(sr, il, n, keep, hw, h, w, d, device)
            active = active[keep]
    return (x_adv, success) if return_success else x_adv
