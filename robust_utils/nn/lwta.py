"""Local Winner-Takes-All (LWTA) activations and IBP-gated layers.

- ``LWTA``: the channels are grouped into blocks of U competing units; in each block only the
  winner passes its (linear) value. "stochastic" draws the winner from a Gumbel-softmax over the
  units (Panousis, Chatzis & Theodoridis 2021, "Stochastic local winner-takes-all networks enable
  profound adversarial robustness"; Panousis et al. 2019, AISTATS), "deterministic" takes the
  argmax (classical LWTA, Srivastava et al. 2013), "expected" is a noise-free differentiable
  surrogate for attacks.
- ``IBPLinear`` / ``IBPConv2d``: layers whose connections carry utility gates z with a
  stick-breaking (Indian Buffet Process) prior, the IBP option of the first release of the
  authors' code (Panousis et al. 2019; the authors' code, github.com/konpanousis/Adversarial-LWTA-AutoAttack).
- ``kl_divergence(model)``: the sum of the KL terms of the last forward pass (the ELBO's
  regulariser); ``lwta_override``: attack through another mode or temperature.

Facts attributed to "the authors' code" come from their public code (github.com/konpanousis/Adversarial-LWTA-AutoAttack), not from the papers.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.checks import check_number, check_positive_int
from ..core.switch import temporarily

LWTA_MODES = ("stochastic", "deterministic", "expected")
ACTIVATIONS = ("relu", "lwta", "stochastic_lwta")
_EULER = 0.5772156649015329


class LWTA(nn.Module):
    """Local Winner-Takes-All activation over blocks of ``units`` consecutive channels.

    The C input channels are split into C/U blocks of U consecutive channels (the reshape
    (N, C/U, U, ...) of the authors' code, github.com/konpanousis/Adversarial-LWTA-AutoAttack); the competition logits are the
    pre-activations h themselves, and output = h * mask with a mask over the U axis:

    - "stochastic" (Panousis et al. 2021; the report, section 4; the authors' code, github.com/konpanousis/Adversarial-LWTA-AutoAttack):
      mask = softmax((h + G) / T) with Gumbel noise G = -log(-log(u + 1e-8) + 1e-8),
      u ~ U(0, 1), i.e. a Concrete (Gumbel-softmax) relaxation of the winner indicator
      xi ~ Cat(softmax(h)); soft, not hard. T = ``temperature`` (0.67) in training mode and
      ``test_temperature`` (0.01) in eval mode, where the noise is still sampled (as the authors'
      code). At any T the sampled winner (argmax of the mask) is u with probability softmax(h)_u.
      The live version of the authors' code learnt T_train (softplus(-0.01) ~ 0.688); their later
      code and this class fix it (the authors' code, github.com/konpanousis/Adversarial-LWTA-AutoAttack).
    - "deterministic": mask = one_hot(argmax_u h) (Srivastava et al. 2013); no randomness.
    - "expected": mask = softmax(h / T) (T as in "stochastic"), no noise: a differentiable surrogate
      for attacks. With T = 1 it is the exact expected output h * softmax(h) of the stochastic
      activation as T -> 0; with the test temperature 0.01 it is close to "deterministic". Use
      ``lwta_override(model, "expected", temperature=1.0)`` for the former.

    After every forward pass ``last_kl`` holds a 0-dim tensor (nats): in "stochastic" mode the KL of the
    winner posterior against the uniform prior, KL(q || Cat(1/U)) = sum q (log q - log(1/U)),
    summed over blocks (and spatial positions) and averaged over the batch (the report, section 4:
    the ELBO term sum_b [log q - log p] of the winners). We take q = softmax(h), the categorical
    posterior whose Concrete relaxation is sampled (not softmax(h / T): the winner frequencies are
    softmax(h) at every T), computed analytically with log_softmax (exactly 0 when the units of
    every block are equal). The authors' code plugs in the relaxed sample instead (a
    one-sample, biased estimate) and divides by 1000 (the authors' code, github.com/konpanousis/Adversarial-LWTA-AutoAttack); the scale belongs to the
    ELBO weight, so it is not applied here. In the other modes ``last_kl`` is a zero tensor;
    before the first forward it is None.

    Args:
        units: U >= 2 competing units per block (the authors use U = 2).
        mode: one of ``LWTA_MODES``.
        temperature: T > 0 in training mode.   test_temperature: T > 0 in eval mode.
    Shapes: h (N, C, ...) floating, e.g. (N, C) or (N, C, H, W), with C divisible by U ->
        the same shape and dtype.
    Raises:
        ValueError: in __init__, U < 2, an unknown mode or a non-positive temperature; in forward,
            an input with fewer than 2 dimensions or C not divisible by U.
    """

    def __init__(self, units: int = 2, mode: str = "stochastic", temperature: float = 0.67,
                 test_temperature: float = 0.01):
        super().__init__()
        if check_positive_int(units, "units") < 2:
            raise ValueError(f"LWTA needs at least 2 competing units per block, got units={units}")
        if mode not in LWTA_MODES:
            raise ValueError(f"unknown LWTA mode {mode!r}; valid: {', '.join(LWTA_MODES)}")
        self.units, self.mode = units, mode
        self.temperature = check_number(temperature, "temperature", 0, strict=True)
        self.test_temperature = check_number(test_temperature, "test_temperature", 0, strict=True)
        self.last_kl: torch.Tensor | None = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.dim() < 2:
            raise ValueError(f"LWTA input must be (N, C, ...), got shape {tuple(h.shape)}")
        n, c, u = h.shape[0], h.shape[1], self.units
        if c % u:
            raise ValueError(f"LWTA: the channel count C={c} is not divisible by the units per block U={u}")
        blocks = h.reshape(n, c // u, u, *h.shape[2:])
        temp = self.temperature if self.training else self.test_temperature
        if self.mode == "deterministic":
            mask = torch.zeros_like(blocks).scatter_(2, blocks.argmax(2, keepdim=True), 1.0)
        elif self.mode == "expected":
            mask = F.softmax(blocks / temp, dim=2)
        else:
            g = -torch.log(-torch.log(torch.rand_like(blocks) + 1e-8) + 1e-8)
            mask = F.softmax((blocks + g) / temp, dim=2)
        if self.mode == "stochastic":
            log_q = F.log_softmax(blocks, dim=2)
            kl = log_q.exp() * (log_q + math.log(u))
            self.last_kl = kl.reshape(n, -1).sum(1).mean()
        else:
            self.last_kl = h.new_zeros(())
        return (blocks * mask).reshape(h.shape)

    def extra_repr(self) -> str:
        return (f"units={self.units}, mode={self.mode!r}, temperature={self.temperature}, "
                f"test_temperature={self.test_temperature}")


def make_activation(kind: str, **kwargs) -> nn.Module:
    """An activation by kind: "relu" (nn.ReLU), "lwta" (deterministic LWTA) or "stochastic_lwta".

    kwargs go to the module: ``LWTA``'s units / temperature / test_temperature, or nn.ReLU's
    ``inplace`` (so LWTA arguments with kind "relu" are an error).
    Raises:
        ValueError: unknown kind (the message lists ``ACTIVATIONS``) or bad arguments.
    """
    try:
        if kind == "relu":
            return nn.ReLU(**kwargs)
        if kind == "lwta":
            return LWTA(mode="deterministic", **kwargs)
        if kind == "stochastic_lwta":
            return LWTA(mode="stochastic", **kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for a {kind!r} activation: {e}") from None
    raise ValueError(f"unknown activation {kind!r}; valid: {', '.join(ACTIVATIONS)}")


def lwta_modules(model: nn.Module) -> list[LWTA]:
    """Every LWTA module of a model, in ``model.modules()`` order (empty if none)."""
    return [m for m in model.modules() if isinstance(m, LWTA)]


@contextlib.contextmanager
def lwta_override(model: nn.Module, mode: str | None = None, temperature: float | None = None):
    """Within the block, every LWTA module of ``model`` uses ``mode`` and/or ``temperature``.

    ``temperature`` replaces both the training and the test temperature, e.g. to attack the
    stochastic model at the training temperature 0.67 (Croce's reply in github.com/fra31/auto-attack issue #58: changing the activation is a legitimate adaptive step), or through the
    "expected" / "deterministic" surrogates, then evaluate the real model. None leaves the
    setting as it is. Every module's previous mode and temperatures are restored on exit, even
    after an exception.

    Raises:
        ValueError: an unknown mode, a non-positive temperature, or a model without LWTA modules
            (raised on entering the block, before anything is changed).
    """
    if mode is not None and mode not in LWTA_MODES:
        raise ValueError(f"unknown LWTA mode {mode!r}; valid: {', '.join(LWTA_MODES)}")
    if temperature is not None:
        temperature = check_number(temperature, "temperature", 0, strict=True)
    modules = lwta_modules(model)
    if not modules:
        raise ValueError("lwta_override: the model has no LWTA module")
    values = {} if mode is None else {"mode": mode}
    if temperature is not None:
        values.update(temperature=temperature, test_temperature=temperature)
    with temporarily(modules, **values):
        yield model


# ------------------------------------------------------------------ IBP (stick-breaking) gates


def kumaraswamy_beta_kl(a: torch.Tensor, b: torch.Tensor, alpha: float = 1.0, beta: float = 1.0,
                        terms: int = 10) -> torch.Tensor:
    """KL(Kumaraswamy(a, b) || Beta(alpha, beta)), elementwise, in nats.

    The closed form of Nalisnick & Smyth 2017 ("Stick-breaking variational autoencoders", ICLR,
    section 3.1 and appendix):
        (a - alpha)/a (-gamma - psi(b) - 1/b) + log(a b) + log B(alpha, beta) - (b - 1)/b
        + (beta - 1) b sum_{m>=1} B(m/a, b) / (m + a b),
    with the infinite series (the Taylor expansion of E[log(1 - v)]) truncated after ``terms``
    terms; 10 is their choice. The series vanishes for beta = 1, the IBP prior Beta(alpha0, 1)
    that the IBP layers use, and the result is then exact; it equals the authors'
    ``kl_divergence_kumaraswamy`` (the authors' code, github.com/konpanousis/Adversarial-LWTA-AutoAttack). For beta != 1 the tail decays only like
    m^-(1+b): 10 terms underestimate KL(Kuma(1.5, 1) || Beta(1, 2)) = 0.659 by 0.13 nats; pass
    ``terms=10_000`` for 1e-3 accuracy.

    Args:
        a, b: Kumaraswamy parameters > 0, float tensors of one shape.
        alpha, beta: Beta prior parameters > 0.   terms: series terms (>= 1).
    Returns: a tensor of a's shape and dtype.
    """
    kl = ((a - alpha) / a * (-_EULER - torch.digamma(b) - 1.0 / b) + torch.log(a * b)
          + math.lgamma(alpha) + math.lgamma(beta) - math.lgamma(alpha + beta) - (b - 1.0) / b)
    if beta != 1.0:
        m = torch.arange(1, terms + 1, dtype=a.dtype, device=a.device)
        a_, b_ = a.unsqueeze(-1), b.unsqueeze(-1)
        log_beta_fn = torch.lgamma(m / a_) + torch.lgamma(b_) - torch.lgamma(m / a_ + b_)
        kl = kl + (beta - 1.0) * b * (log_beta_fn.exp() / (m + a_ * b_)).sum(-1)
    return kl


class _IBPGates:
    """The gates z and the KL terms shared by ``IBPLinear`` and ``IBPConv2d`` (see IBPLinear)."""

    prior_alpha = 1.0  # v_k ~ Beta(alpha0, 1) with alpha0 = 1: the authors' prior Beta(1, 1)

    def _init_gates(self, temperature: float, threshold: float, t_pi_range: tuple[float, float],
                    conc1: float, conc0: float) -> None:
        w = self.weight
        out_units, in_units = w.shape[:2]
        gate_shape = (out_units, in_units) + (1,) * (w.dim() - 2)
        self.temperature, self.threshold = temperature, threshold
        self.t_pi = nn.Parameter(torch.empty(gate_shape, device=w.device, dtype=w.dtype).uniform_(*t_pi_range))
        self.conc1 = nn.Parameter(torch.full((out_units,), float(conc1), device=w.device, dtype=w.dtype))
        self.conc0 = nn.Parameter(torch.full((out_units,), float(conc0), device=w.device, dtype=w.dtype))
        self.last_kl: torch.Tensor | None = None

    def gates(self) -> torch.Tensor:
        """z of ``t_pi``'s shape: a Binary Concrete sample in training mode, the thresholded
        sigmoid(t_pi) * 1[sigmoid(t_pi) > threshold] in eval mode."""
        if not self.training:
            q = torch.sigmoid(self.t_pi)
            return q * (q > self.threshold)
        u = torch.rand_like(self.t_pi)
        logistic = torch.log(u + 1e-8) - torch.log(1.0 - u + 1e-8)
        return torch.sigmoid((logistic + self.t_pi) / self.temperature)

    def stick_probabilities(self) -> torch.Tensor:
        """One reparameterised sample of pi_k = prod_{i<=k} v_i, v_i ~ Kumaraswamy(a_i, b_i):
        shape (K,), clamped to [1e-6, 1 - 1e-6] for the logarithms of the KL."""
        a, b = F.softplus(self.conc1), F.softplus(self.conc0)
        u = torch.rand_like(a).clamp(1e-6, 1.0 - 1e-6)
        log_v = torch.log(-torch.expm1(torch.log1p(-u) / b)) / a  # inverse CDF, in log space
        return torch.exp(torch.cumsum(log_v, 0)).clamp(1e-6, 1.0 - 1e-6)

    def ibp_kl(self) -> torch.Tensor:
        """KL_sticks + KL_z (0-dim, nats; see IBPLinear)."""
        a, b = F.softplus(self.conc1), F.softplus(self.conc0)
        kl_sticks = kumaraswamy_beta_kl(a, b, self.prior_alpha, 1.0).sum()
        pi = self.stick_probabilities().view((-1,) + (1,) * (self.t_pi.dim() - 1))
        q, log_q, log_1mq = torch.sigmoid(self.t_pi), F.logsigmoid(self.t_pi), F.logsigmoid(-self.t_pi)
        kl_z = q * (log_q - torch.log(pi)) + (1.0 - q) * (log_1mq - torch.log1p(-pi))
        return kl_sticks + kl_z.sum()

    def _gated_forward_prologue(self) -> torch.Tensor:
        w = self.weight * self.gates()
        self.last_kl = self.ibp_kl() if self.training else w.new_zeros(())
        return w

    def _ibp_repr(self) -> str:
        return f", temperature={self.temperature}, threshold={self.threshold}"


def _check_ibp_args(temperature: float, threshold: float) -> tuple[float, float]:
    temperature = check_number(temperature, "temperature", 0, strict=True)
    threshold = check_number(threshold, "threshold", 0)
    if threshold >= 1:
        raise ValueError(f"threshold must lie in [0, 1), got {threshold}")
    return temperature, threshold


class IBPLinear(_IBPGates, nn.Linear):
    """nn.Linear whose connections carry utility gates z with an IBP (stick-breaking) prior.

    The IBP option of the first release of the Stochastic-LWTA code (commit 0492b0e,
    DenseBayesian; Panousis et al. 2019; the authors' code, github.com/konpanousis/Adversarial-LWTA-AutoAttack). Forward: y = x (W * z)^T + b.
    The weights W are deterministic (plain nn.Linear parameters with torch's initialisation): the
    Gaussian weight posterior of that release is out of scope.

    - Gates: one per connection, z and ``t_pi`` of shape (out, in). Posterior q(z) =
      Bernoulli(sigmoid(t_pi)), relaxed in training by a Binary Concrete sample
      z = sigmoid((log u - log(1 - u) + t_pi) / T), u ~ U(0, 1), T = ``temperature`` (0.67);
      in eval mode z = sigmoid(t_pi) * 1[sigmoid(t_pi) > threshold] (threshold tau = 1e-2).
      t_pi is initialised U(4, 5) (dense) as the authors; IBPConv2d uses U(0.1, 5).
    - Prior: z_{k,j} ~ Bernoulli(pi_k) with pi_k = prod_{i<=k} v_i, v_i ~ Beta(alpha0 = 1, 1)
      (the authors' Beta(1, 1)), one stick per output unit k = 1..K, K = out_features; the
      variational posterior of the sticks is Kumaraswamy(a, b), a = softplus(conc1),
      b = softplus(conc0), raw initial values conc1 = K, conc0 = 2 (dense; IBPConv2d: 2 and
      0.5453, softplus(0.5453) ~ 1.0).
    - ``last_kl`` after a training forward (0-dim, nats): KL_sticks + KL_z with
      KL_sticks = sum_k KL(Kumaraswamy(a_k, b_k) || Beta(1, 1)) (``kumaraswamy_beta_kl``) and
      KL_z = sum over gates of KL(Bernoulli(q) || Bernoulli(pi_k)), q = sigmoid(t_pi), using one
      reparameterised Kumaraswamy sample of pi (``stick_probabilities``). Zero tensor after an
      eval forward; None before the first forward. Not scaled: the ELBO weight does that.

    Differences from the authors' first release (the authors' code, github.com/konpanousis/Adversarial-LWTA-AutoAttack), deliberately:
      - their dense gates are shared by the U units of an LWTA block (t_pi (in, out/U)) and the
        conv gates by a whole block of kernels (t_pi (out/U,)); ours are per connection (linear)
        and per (out, in) kernel (conv), since the gates do not know the activation; hence K is
        the number of output units here, out/U there.
      - their KL_z keeps only the z = 1 half, sum q (log q - log pi) (a mean for conv); ours is
        the full Bernoulli KL, summed.
      - their Kumaraswamy sampler rescales u to [1 - 1e-6, 1] and omits the "1 -" of the inverse
        CDF, so its pi is ~1; ours is the inverse CDF v = (1 - (1 - u)^(1/b))^(1/a).
      - they clamp conc to [-6, 1000] and t_pi to [-7, 600] after each step; we clamp pi to
        [1e-6, 1 - 1e-6] inside the KL instead.

    Args: those of nn.Linear, plus
        temperature: Binary Concrete temperature > 0.   threshold: eval cut-off tau in [0, 1).
    Shapes: x (N, in_features) float -> (N, out_features), same dtype.
    Raises:
        ValueError: a non-positive temperature or a threshold outside [0, 1) (before any work).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None,
                 temperature: float = 0.67, threshold: float = 1e-2):
        temperature, threshold = _check_ibp_args(temperature, threshold)
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._init_gates(temperature, threshold, (4.0, 5.0), conc1=out_features, conc0=2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self._gated_forward_prologue(), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._ibp_repr()


class IBPConv2d(_IBPGates, nn.Conv2d):
    """nn.Conv2d with one IBP utility gate per (out, in) kernel (ConvBayesian of the first release).

    As ``IBPLinear`` (read it for the model, the KL and the differences from the authors' code),
    with gates z and ``t_pi`` of shape (out_channels, in_channels / groups, 1, 1) multiplying whole
    kernels, t_pi initialised U(0.1, 5), one stick per output channel (K = out_channels) and the
    authors' conv initial values conc1 = 2, conc0 = 0.5453 (the authors' code, github.com/konpanousis/Adversarial-LWTA-AutoAttack).

    Args: those of nn.Conv2d, plus temperature (> 0) and threshold (in [0, 1)).
    Shapes: x (N, in_channels, H, W) float -> (N, out_channels, H', W'), same dtype.
    Raises:
        ValueError: a non-positive temperature or a threshold outside [0, 1) (before any work).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None,
                 temperature: float = 0.67, threshold: float = 1e-2):
        temperature, threshold = _check_ibp_args(temperature, threshold)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=bias, padding_mode=padding_mode, device=device, dtype=dtype)
        self._init_gates(temperature, threshold, (0.1, 5.0), conc1=2.0, conc0=0.5453)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self._gated_forward_prologue(), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._ibp_repr()


def kl_divergence(model: nn.Module) -> torch.Tensor:
    """The sum of ``last_kl`` over every module of ``model`` that has a non-None one (nats).

    Each term is from that module's most recent forward pass, so call this right after the
    forward pass whose KL you want, before any other forward (an attack's included). The ELBO of
    the report (section 4) is then CE + weight * kl_divergence(model), the KL being
    sum_b [log q - log p]; the weight (e.g. 1 / dataset size, or the authors' 1/1000 for the
    winners) is the caller's choice.

    Returns: a 0-dim float tensor on the model's device (that of its first parameter or buffer;
        the CPU if it has none), 0 if no module has a KL.
    """
    first = next(iter(model.parameters()), None)
    if first is None:
        first = next(iter(model.buffers()), None)
    total = torch.zeros((), device=first.device if first is not None else "cpu")
    for m in model.modules():
        kl = getattr(m, "last_kl", None)
        if kl is not None:
            total = total + kl
    return total


__all__ = ["LWTA", "LWTA_MODES", "ACTIVATIONS", "make_activation", "lwta_modules", "lwta_override",
           "IBPLinear", "IBPConv2d", "kumaraswamy_beta_kl", "kl_divergence"]
