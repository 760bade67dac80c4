"""EfficientNet-lite0 (Tan and Le 2019, "EfficientNet"; the lite variants of the TensorFlow
repository): a frozen ImageNet feature network for FID and for ProjectedGAN's discriminators.

Lite means: ReLU6 for swish, no squeeze-and-excitation, stem and head kept at 32 and 1280
channels. The network, with TensorFlow's "same" padding (out = ceil(in / s); at stride 2 the
extra row and column go at the bottom and right):

  stem   3x3 conv, stride 2, 3 -> 32, BN, ReLU6
  blocks MBConv, one per row below: expand 1x1 (by e; none when e = 1), BN, ReLU6,
         depthwise kxk (stride s), BN, ReLU6, project 1x1, BN; + input when s = 1 and i = o
  head   1x1 conv 320 -> 1280, BN, ReLU6, global average pool: 1280 features

BN uses its running statistics (eps 1e-3) and is folded into the conv before it:
  conv(x, W) gamma / sqrt(var + eps) + beta - mean gamma / sqrt(var + eps) = conv(x, W') + b'.
The weights are constants (persistent arrays, not Parameters): no gradient is computed for them,
but one flows to the input image, as ProjectedGAN's generator loss needs.

Inputs are RGB in [-1, 1] as they are (the TensorFlow models take (x - 127) / 128 of 8-bit
pixels; projected-gan feeds its [-1, 1] images unchanged).
"""
import math
import re

import numpy

from .. import functions as F
from ..links.link import Chain, Link
from .torch_pth import WeightFileError
from .weights import cached_state_dict, efficientnet_lite0_file, frozen_network

# the block rows of the TensorFlow builder: r repeats, k kernel, s stride, e expansion, i/o channels
BLOCKS = ("r1_k3_s11_e1_i32_o16", "r2_k3_s22_e6_i16_o24", "r2_k5_s22_e6_i24_o40",
          "r3_k3_s22_e6_i40_o80", "r3_k5_s11_e6_i80_o112", "r4_k5_s22_e6_i112_o192",
          "r1_k3_s11_e6_i192_o320")
BN_EPS = 1e-3
FID_SIZE = 224          # the ImageNet resolution of lite0
# ProjectedGAN's four feature maps: after these blocks (strides 4, 8, 16, 32; 24, 40, 112, 320 ch)
TAP_BLOCKS = (2, 4, 10, 15)


def decode(row):
    """'r2_k3_s22_e6_i16_o24' -> dict(r=2, k=3, s=2, e=6, i=16, o=24)."""
    m = re.fullmatch(r"r(\d+)_k(\d+)_s(\d)\3_e(\d+)_i(\d+)_o(\d+)", row)
    if m is None:
        raise ValueError(f"not a block row: {row!r}")
    return dict(zip("rksei", map(int, m.groups()[:5])), o=int(m.group(6)))


def block_list():
    """One (k, s, e, i, o) per MBConv block: a row's repeats after the first take s = 1, i = o."""
    out = []
    for row in BLOCKS:
        a = decode(row)
        for n in range(a["r"]):
            out.append((a["k"], a["s"] if n == 0 else 1, a["e"], a["i"] if n == 0 else a["o"],
                        a["o"]))
    return out


def same_pads(n, k, s):
    """TensorFlow's "same" (lo, hi) pads of one axis: out = ceil(n / s), the odd pixel at hi."""
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


class FrozenConv(Link):
    """conv(x, W) + b with "same" padding; W and b are constants (BN folded in)."""

    def __init__(self, W, b, stride=1, depthwise=False):
        super().__init__()
        self.stride, self.depthwise = stride, depthwise
        self.add_persistent("W", W)
        self.add_persistent("b", b)

    def forward(self, x):
        k, s = self.W.shape[2], self.stride
        pads = tuple(same_pads(n, k, s) for n in x.shape[2:])
        if self.depthwise:
            return F.depthwise_convolution_2d(x, self.W, self.b, s, pads)
        if any(lo != hi for lo, hi in pads):     # the stem: pad the small RGB input once
            x = F.pad(x, ((0, 0), (0, 0)) + pads)
            pads = ((0, 0), (0, 0))
        return F.convolution_2d(x, self.W, self.b, s, (pads[0][0], pads[1][0]))


def fold_bn(sd, conv, bn, dtype, eps=BN_EPS):
    """W', b' of conv followed by eval-mode BN (see the module docstring), computed in float64."""
    missing = [k for k in (f"{conv}.weight",) + tuple(f"{bn}.{n}" for n in (
        "weight", "bias", "running_mean", "running_var")) if k not in sd]
    if missing:
        raise WeightFileError(f"the weights lack {missing[0]!r} (not this network's file?)")
    W = sd[f"{conv}.weight"].astype(numpy.float64)
    gamma, beta = sd[f"{bn}.weight"], sd[f"{bn}.bias"]
    mean, var = sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"]
    scale = gamma / numpy.sqrt(var.astype(numpy.float64) + eps)
    W = W * scale[:, None, None, None]
    b = beta - mean * scale
    return W.astype(dtype), b.astype(dtype)


class MBConv(Chain):
    """Inverted bottleneck: expand 1x1, depthwise kxk, project 1x1 (+ input when shapes agree)."""

    def __init__(self, sd, prefix, k, s, e, i, o, dtype):
        super().__init__()
        self.expand = None
        if e != 1:
            self.expand = FrozenConv(*fold_bn(sd, f"{prefix}._expand_conv", f"{prefix}._bn0",
                                              dtype))
        self.depthwise = FrozenConv(*fold_bn(sd, f"{prefix}._depthwise_conv", f"{prefix}._bn1",
                                           dtype), stride=s, depthwise=True)
        self.project = FrozenConv(*fold_bn(sd, f"{prefix}._project_conv", f"{prefix}._bn2",
                                           dtype))
        self.residual = s == 1 and i == o

    def forward(self, x):
        h = x if self.expand is None else F.relu6(self.expand(x))
        h = self.project(F.relu6(self.depthwise(h)))
        return h + x if self.residual else h


class EfficientNetLite0(Chain):
    """The frozen network; `net(x)` gives the pooled 1280 features, `net.taps(x)` the four maps."""

    label = "EfficientNet-lite0"

    def __init__(self, state_dict, dtype=numpy.float32):
        super().__init__()
        sd = state_dict
        self.stem = FrozenConv(*fold_bn(sd, "_conv_stem", "_bn0", dtype), stride=2)
        self.n_blocks = 0
        for n, args in enumerate(block_list()):
            setattr(self, f"block{n}", MBConv(sd, f"_blocks.{n}", *args, dtype))
            self.n_blocks += 1
        self.head = FrozenConv(*fold_bn(sd, "_conv_head", "_bn1", dtype))

    @staticmethod
    def _resize(x, resize):
        """x bilinearly resized to 224 x 224 when resize is set and it is smaller."""
        if resize and min(x.shape[2:]) < FID_SIZE:
            return F.resize_images(x, (FID_SIZE, FID_SIZE), align_corners=False)
        return x

    def _blocks(self, x, taps=None):
        h = F.relu6(self.stem(x))
        maps = []
        for n in range(self.n_blocks):
            h = getattr(self, f"block{n}")(h)
            if taps is not None and n in taps:
                maps.append(h)
        return h, maps

    def forward(self, x, resize=True):
        """(N, 3, H, W) in [-1, 1] -> (N, 1280): head features averaged over the image."""
        h, _ = self._blocks(self._resize(x, resize))
        return F.mean(F.relu6(self.head(h)), axis=(2, 3))

    def taps(self, x, resize=False):
        """ProjectedGAN's feature maps: strides 4, 8, 16, 32 with 24, 40, 112, 320 channels."""
        return self._blocks(self._resize(x, resize), TAP_BLOCKS)[1]


_loaded = {}


def efficientnet_lite0(device=-1):
    """The pretrained network on device (a backend.Device or an id, -1 the CPU), built once per
    process and device."""
    return frozen_network(_loaded, device,
                          lambda: EfficientNetLite0(cached_state_dict(efficientnet_lite0_file())))
