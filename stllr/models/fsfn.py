"""FSFN: the fully spiking FlowNet of the paper's optical-flow experiment (docs/flow.md §6).

U-Net on input frames ``[B, C, H, W]`` (H, W multiples of 16), one call per time step::

    e1 = S(conv3×3/2(x))        C → c1, H/2        (encoder: spiking, stride 2, no bias)
    e2 = S(conv3×3/2(e1))       c1 → c2, H/4
    e3 = S(conv3×3/2(e2))       c2 → c3, H/8
    e4 = S(conv3×3/2(e3))       c3 → c4, H/16
    r  = e4 + S(conv(S(conv(e4))))   twice          (residual blocks, sums of spikes)
    f4 = head4(r)                                  H/16
    d3 = S(deconv4×4/2(r))      c4 → k3, H/8        (decoder: spiking transposed convs)
    f3 = head3([e3, d3, up(f4)])                   H/8
    d2 = S(deconv([e3, d3, up(f4)]))  → k2, H/4
    f2 = head2([e2, d2, up(f3)])                   H/4
    d1 = S(deconv([e2, d2, up(f3)]))  → k1, H/2
    f1 = head1([e1, d1, up(f2)])                   H/2

S is a LIF population (γ = 0.88, θ = 0.6, soft reset); ``up`` is a fixed ×2 bilinear
up-sampling. Spike-FlowNet's widths are (c1…c4) = (64, 128, 256, 512) and (k3, k2, k1)
= (128, 64, 4). The model returns ``(f1, f2, f3, f4)``, finest first, each ``[B, 2, h, w]``
in pixels of the full-resolution input.

Heads (:class:`FlowHead`): a non-spiking 1×1 convolution read out through a leaky
integrator of decay γ_o, ``o[t] = γ_o·o[t−1] + W·h[t] + b``. Readout ``"sum"`` (γ_o = 1,
the default) integrates the whole window; ``"last"`` (γ_o = 0) is the instantaneous
output. The paper does not say which it used (unverified; docs/flow.md §6).

S-TLLR family: ``Conv2dSTLLR`` / ``ConvTranspose2dSTLLR`` layers (the learning signal
reaches every layer at the same step only; heads: exact gradient of o[t] through the
integrator's input trace, nothing through time). BPTT family: ``ScaledWSConv2d`` /
``ScaledWSConvTranspose2d`` + ``BPTTLIF``, everything differentiated through time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stllr.factors import STLLRFactors
from stllr.layers.bptt import BPTTLIF, ScaledWSConv2d, ScaledWSConvTranspose2d
from stllr.layers.stllr_layers import Conv2dSTLLR, ConvTranspose2dSTLLR
from stllr.models.base import SpikingModel
from stllr.neuron import LIFParams

FSFN_ENCODER = (64, 128, 256, 512)
FSFN_DECODER = (128, 64, 4)
FSFN_GAMMA = 0.88
#: the paper's flow factors [λ_post, λ_pre, α_post, α_pre]; α_post ∈ {−0.2, 0, +0.2}
FLOW_FACTORS = STLLRFactors(lambda_post=0.5, lambda_pre=0.8, alpha_post=-0.2, alpha_pre=1.0)
READOUTS = {"sum": 1.0, "last": 0.0}
#: initial weight-standardisation gain of every spiking layer: with gain 1 the sparse
#: event counts (≈ 0.02 events per pixel and bin) leave the network silent at the start
#: (measured firing rate < 0.5 % in the first layer, 0 deeper); 3 makes every layer fire
#: (4 % in the first, 10–40 % deeper) — docs/flow.md §6
FSFN_GAIN_INIT = 3.0


def fsfn_lif(threshold: float = 0.6) -> LIFParams:
    """LIF constants of FSFN: γ = 0.88 (leak = logit 0.88), θ = ``threshold``."""
    return LIFParams(leak=math.log(FSFN_GAMMA / (1 - FSFN_GAMMA)), threshold=threshold)


class _SpikingBPTT(nn.Module):
    def __init__(self, synapse: nn.Module, lif: LIFParams, psi: str):
        super().__init__()
        self.synapse = synapse
        self.lif = BPTTLIF(lif, psi=psi)

    def forward(self, x):
        return self.lif(self.synapse(x))


class FlowHead(nn.Module):
    """1×1 graded flow head with a leaky integrator (module doc).

    Forward at step t (``h`` ``[B, C, h, w]``)::

        P[t] = γ_o·P[t−1] + h[t]        c[t] = γ_o·c[t−1] + 1
        o[t] = W ⋆ P[t] + b·c[t]        (= γ_o·o[t−1] + W ⋆ h[t] + b, W ⋆ = 1×1 conv)

    With ``local=True`` (S-TLLR) ``P[t−1]`` is detached: ∂o[t]/∂W = P[t] (exact, a trace)
    and ∂o[t]/∂h[t] = Wᵀ, nothing reaches earlier steps. ``local=False`` (BPTT) keeps the
    history in the graph.
    """

    def __init__(self, in_channels: int, decay: float, local: bool):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 2, 1)
        nn.init.normal_(self.conv.weight, 0.0, 1e-2)
        nn.init.zeros_(self.conv.bias)
        self.decay, self.local = decay, local
        self.p: torch.Tensor | None = None
        self.c = 0.0

    def reset_state(self) -> None:
        self.p, self.c = None, 0.0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.p is None or self.p.shape != h.shape or self.decay == 0.0:
            self.p, self.c = h, 1.0
        else:
            prev = self.p.detach() if self.local else self.p
            self.p = self.decay * prev + h
            self.c = self.decay * self.c + 1.0
        out = F.conv2d(self.p, self.conv.weight)
        return out + self.c * self.conv.bias.view(1, -1, 1, 1)


def _up(f: torch.Tensor) -> torch.Tensor:
    return F.interpolate(f, scale_factor=2, mode="bilinear", align_corners=False)


class FSFN(SpikingModel):
    """Fully spiking FlowNet (module doc); ``family`` is ``"stllr"`` or ``"bptt"``."""

    def __init__(
        self,
        in_channels: int = 2,
        *,
        family: str = "stllr",
        encoder: Sequence[int] = FSFN_ENCODER,
        decoder: Sequence[int] = FSFN_DECODER,
        factors: STLLRFactors = FLOW_FACTORS,
        psi: str = "d",
        threshold: float = 0.6,
        readout: str = "sum",
        input_size: tuple[int, int] = (256, 256),
        gain_init: float = FSFN_GAIN_INIT,
    ):
        super().__init__((in_channels, *input_size), 2)
        if family not in ("stllr", "bptt"):
            raise ValueError(f"family must be 'stllr' or 'bptt', got {family!r}")
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {sorted(READOUTS)}, got {readout!r}")
        if len(encoder) != 4 or len(decoder) != 3:
            raise ValueError(f"FSFN needs 4 encoder and 3 decoder widths, got {encoder}, {decoder}")
        self.family = family
        lif = fsfn_lif(threshold)

        def conv(c_in, c_out, stride, bias):
            if family == "bptt":
                return _SpikingBPTT(ScaledWSConv2d(c_in, c_out, 3, stride, 1, bias=bias), lif, psi)
            return Conv2dSTLLR(
                c_in, c_out, 3, stride, 1, bias=bias, lif=lif, factors=factors, psi=psi
            )

        def deconv(c_in, c_out):
            if family == "bptt":
                return _SpikingBPTT(ScaledWSConvTranspose2d(c_in, c_out, 4, 2, 1), lif, psi)
            return ConvTranspose2dSTLLR(c_in, c_out, 4, 2, 1, lif=lif, factors=factors, psi=psi)

        c1, c2, c3, c4 = encoder
        k3, k2, k1 = decoder
        self.encoder = nn.ModuleList(
            [conv(a, b, 2, False) for a, b in zip((in_channels, c1, c2, c3), encoder, strict=True)]
        )
        self.residual = nn.ModuleList([conv(c4, c4, 1, False) for _ in range(4)])
        self.deconv3 = deconv(c4, k3)
        self.deconv2 = deconv(c3 + k3 + 2, k2)
        self.deconv1 = deconv(c2 + k2 + 2, k1)
        decay, local = READOUTS[readout], family == "stllr"
        self.heads = nn.ModuleList(
            [FlowHead(c, decay, local) for c in (c1 + k1 + 2, c2 + k2 + 2, c3 + k3 + 2, c4)]
        )
        self.readout = readout
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("gain"):
                    p.fill_(gain_init)

    def forward(self, x: torch.Tensor, target=None) -> tuple[torch.Tensor, ...]:
        e1, e2, e3, e4 = _encode(self.encoder, x)
        r = e4
        for k in (0, 2):
            r = r + self.residual[k + 1](self.residual[k](r))
        f4 = self.heads[3](r)
        cat3 = torch.cat([e3, self.deconv3(r), _up(f4)], dim=1)
        f3 = self.heads[2](cat3)
        cat2 = torch.cat([e2, self.deconv2(cat3), _up(f3)], dim=1)
        f2 = self.heads[1](cat2)
        cat1 = torch.cat([e1, self.deconv1(cat2), _up(f2)], dim=1)
        f1 = self.heads[0](cat1)
        return f1, f2, f3, f4


def _encode(layers: nn.ModuleList, x: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for layer in layers:
        x = layer(x)
        out.append(x)
    return out
