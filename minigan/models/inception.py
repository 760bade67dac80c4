"""Inception-v3 as FID computes it (Szegedy et al. 2016, "Rethinking the Inception Architecture";
Heusel et al. 2017 took its 2048 pool features of the TensorFlow graph inception-2015-12-05, which
mseitzer/pytorch-fid ported to torchvision's module names: the weights this file reads).

torchvision's Inception3 with 1008 classes (the classifier is not used), where every conv is
BasicConv2d = conv without bias, BN (eps 1e-3), ReLU:

  stem   Conv2d_1a_3x3 (stride 2), 2a_3x3, 2b_3x3 (pad 1), max pool 3/2, 3b_1x1, 4a_3x3,
         max pool 3/2                                            (N, 192, 35, 35) at 299 x 299
  5b-5d  A: 1x1 | 1x1, 5x5 | 1x1, 3x3, 3x3 | avg pool 3, 1x1    (N, 288, 35, 35)
  6a     B: 3x3/2 | 1x1, 3x3, 3x3/2 | max pool 3/2              (N, 768, 17, 17)
  6b-6e  C: 1x1 | 1x1, 1x7, 7x1 | 1x1, 7x1, 1x7, 7x1, 1x7 | avg pool 3, 1x1
  7a     D: 1x1, 3x3/2 | 1x1, 1x7, 7x1, 3x3/2 | max pool 3/2    (N, 1280, 8, 8)
  7b, 7c E: 1x1 | 1x1, (1x3 ; 3x1) | 1x1, 3x3, (1x3 ; 3x1) | pool 3, 1x1   (N, 2048, 8, 8)
  global average pool: 2048 features

pytorch-fid's patches of the TensorFlow graph: the A, C and first E blocks' average pools leave
the padding out of the mean (count_include_pad=False), and the last E block (Mixed_7c) pools with
a max. Convolutions with stride 1 pad "same" (k // 2 per axis), those with stride 2 do not pad.

Frozen as efficientnet_lite is: BN folded into each conv at load, the weights constants, eval
only; gradients flow to the input. For speed the 1x1 convs that read a block's input are one
GEMM (their weights stacked), and an average pool branch convolves first and pools after:
  avgpool(W x + b) = W avgpool(x) + b,
as each window's weights sum to 1 and W mixes channels only, so the pool runs over the branch's
32 to 192 channels instead of the block's 192 to 1280.

Inputs are RGB in [-1, 1] (pytorch-fid maps its [0, 1] images to 2 x - 1); any other size than
299 x 299 is resized to it bilinearly (align_corners=False, no antialias), as pytorch-fid does.
"""
import numpy

from .. import functions as F
from ..links.link import Chain, Link
from .efficientnet_lite import fold_bn
from .torch_pth import WeightFileError
from .weights import cached_state_dict, frozen_network, inception_file

FID_SIZE = 299


class Conv(Link):
    """relu(conv(x, W) + b): a BasicConv2d with its BN folded in; W and b are constants."""

    def __init__(self, W, b, stride=1, pad=None):
        super().__init__()
        kh, kw = W.shape[2:]
        self.stride = stride
        # "same" at stride 1, none at stride 2 (see the module docstring)
        self.pad = pad if pad is not None else ((kh // 2, kw // 2) if stride == 1 else 0)
        self.add_persistent("W", W)
        self.add_persistent("b", b)

    def forward(self, x):
        return F.relu(F.convolution_2d(x, self.W, self.b, self.stride, self.pad))


def basic(sd, name, dtype, **kw):
    """The BasicConv2d `name` of the state dict as a Conv."""
    return Conv(*fold_bn(sd, f"{name}.conv", f"{name}.bn", dtype), **kw)


class Heads(Link):
    """The 1x1 BasicConv2ds that read one input, as one conv; returns their outputs before ReLU."""

    def __init__(self, sd, prefix, names, dtype):
        super().__init__()
        folded = [fold_bn(sd, f"{prefix}.{n}.conv", f"{prefix}.{n}.bn", dtype) for n in names]
        if any(W.shape[2:] != (1, 1) for W, _ in folded):
            raise WeightFileError(f"{prefix}: {', '.join(names)} must be 1x1 convolutions")
        self.sections = tuple(numpy.cumsum([len(b) for _, b in folded])[:-1].tolist())
        self.add_persistent("W", numpy.concatenate([W for W, _ in folded]))
        self.add_persistent("b", numpy.concatenate([b for _, b in folded]))

    def forward(self, x):
        return F.split_axis(F.convolution_2d(x, self.W, self.b), list(self.sections))


def avg_pool(x):
    """pytorch-fid's avg_pool2d(x, 3, 1, 1, count_include_pad=False)."""
    return F.average_pooling_2d(x, 3, 1, 1, count_include_pad=False)


class Block(Chain):
    """A Mixed_* block: HEADS, the 1x1 convs that read the input (one conv), and CONVS, each
    branch's remaining convs (stride 2 for those in STRIDE2)."""

    HEADS, CONVS, STRIDE2 = (), (), ()

    def __init__(self, sd, prefix, dtype):
        super().__init__()
        self.heads = Heads(sd, prefix, self.HEADS, dtype) if self.HEADS else None
        for name in self.CONVS:
            setattr(self, name, basic(sd, f"{prefix}.{name}", dtype,
                                      stride=2 if name in self.STRIDE2 else 1))


class InceptionA(Block):
    """Mixed_5b-5d: 1x1 | 1x1, 5x5 | 1x1, 3x3, 3x3 | avg pool + 1x1, joined along channels."""

    HEADS = ("branch1x1", "branch5x5_1", "branch3x3dbl_1", "branch_pool")
    CONVS = ("branch5x5_2", "branch3x3dbl_2", "branch3x3dbl_3")

    def forward(self, x):
        b1, b5, bd, bp = self.heads(x)
        b5 = self.branch5x5_2(F.relu(b5))
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(F.relu(bd)))
        return F.concat([F.relu(b1), b5, bd, F.relu(avg_pool(bp))])


class InceptionB(Block):
    """Mixed_6a, the grid reduction 35 -> 17: 3x3/2 | 1x1, 3x3, 3x3/2 | max pool 3/2."""

    CONVS = ("branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3")
    STRIDE2 = ("branch3x3", "branch3x3dbl_3")

    def forward(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return F.concat([b3, bd, F.max_pooling_2d(x, 3, 2)])


class InceptionC(Block):
    """Mixed_6b-6e: 1x1 | 1x1, 1x7, 7x1 | 1x1, 7x1, 1x7, 7x1, 1x7 | avg pool + 1x1."""

    HEADS = ("branch1x1", "branch7x7_1", "branch7x7dbl_1", "branch_pool")
    CONVS = ("branch7x7_2", "branch7x7_3", "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4",
             "branch7x7dbl_5")

    def forward(self, x):
        b1, b7, bd, bp = self.heads(x)
        b7 = self.branch7x7_3(self.branch7x7_2(F.relu(b7)))
        bd = F.relu(bd)
        for n in range(2, 6):
            bd = getattr(self, f"branch7x7dbl_{n}")(bd)
        return F.concat([F.relu(b1), b7, bd, F.relu(avg_pool(bp))])


class InceptionD(Block):
    """Mixed_7a, the grid reduction 17 -> 8: 1x1, 3x3/2 | 1x1, 1x7, 7x1, 3x3/2 | max pool 3/2."""

    HEADS = ("branch3x3_1", "branch7x7x3_1")
    CONVS = ("branch3x3_2", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4")
    STRIDE2 = ("branch3x3_2", "branch7x7x3_4")

    def forward(self, x):
        b3, b7 = self.heads(x)
        b3 = self.branch3x3_2(F.relu(b3))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(F.relu(b7))))
        return F.concat([b3, b7, F.max_pooling_2d(x, 3, 2)])


class InceptionE1(Block):
    """Mixed_7b: 1x1 | 1x1, (1x3 ; 3x1) | 1x1, 3x3, (1x3 ; 3x1) | avg pool + 1x1."""

    HEADS = ("branch1x1", "branch3x3_1", "branch3x3dbl_1", "branch_pool")
    CONVS = ("branch3x3_2a", "branch3x3_2b", "branch3x3dbl_2", "branch3x3dbl_3a",
             "branch3x3dbl_3b")

    def pool_branch(self, x, heads):
        return F.relu(avg_pool(heads[3]))

    def forward(self, x):
        heads = self.heads(x)
        b1, b3, bd = (F.relu(h) for h in heads[:3])
        b3 = F.concat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)])
        bd = self.branch3x3dbl_2(bd)
        bd = F.concat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)])
        return F.concat([b1, b3, bd, self.pool_branch(x, heads)])


class InceptionE2(InceptionE1):
    """Mixed_7c: as Mixed_7b, but its pool branch is a max pool 3/1 (pad 1), then the 1x1."""

    HEADS = InceptionE1.HEADS[:3]
    CONVS = InceptionE1.CONVS + ("branch_pool",)

    def pool_branch(self, x, heads):
        # a max does not commute with the conv: pool the block's input itself
        return self.branch_pool(F.max_pooling_2d(x, 3, 1, 1))


# the stem's convs: (name, stride, pad); a max pool 3/2 after 2b_3x3 and after 4a_3x3
STEM = (("Conv2d_1a_3x3", 2, 0), ("Conv2d_2a_3x3", 1, 0), ("Conv2d_2b_3x3", 1, 1),
        ("Conv2d_3b_1x1", 1, 0), ("Conv2d_4a_3x3", 1, 0))
MIXED = (("Mixed_5b", InceptionA), ("Mixed_5c", InceptionA), ("Mixed_5d", InceptionA),
         ("Mixed_6a", InceptionB), ("Mixed_6b", InceptionC), ("Mixed_6c", InceptionC),
         ("Mixed_6d", InceptionC), ("Mixed_6e", InceptionC), ("Mixed_7a", InceptionD),
         ("Mixed_7b", InceptionE1), ("Mixed_7c", InceptionE2))


class InceptionV3(Chain):
    """The frozen FID network; `net(x)` gives the 2048 pooled features of Mixed_7c."""

    label = "Inception-v3"

    def __init__(self, state_dict, dtype=numpy.float32):
        super().__init__()
        for name, stride, pad in STEM:
            setattr(self, name, basic(state_dict, name, dtype, stride=stride, pad=pad))
        for name, block in MIXED:
            setattr(self, name, block(state_dict, name, dtype))

    def forward(self, x, resize=True):
        """(N, 3, H, W) in [-1, 1] -> (N, 2048); resized to 299 x 299 first unless resize=False."""
        if resize and tuple(x.shape[2:]) != (FID_SIZE, FID_SIZE):
            x = F.resize_images(x, (FID_SIZE, FID_SIZE), align_corners=False)
        h = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        h = F.max_pooling_2d(h, 3, 2)
        h = F.max_pooling_2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(h)), 3, 2)
        for name, _ in MIXED:
            h = getattr(self, name)(h)
        return F.mean(h, axis=(2, 3))


_loaded = {}


def inception_v3(device=-1):
    """The FID Inception-v3 on device (a backend.Device or an id, -1 the CPU), built once per
    process and device from the downloaded weights (`python cli.py download inception`)."""
    return frozen_network(_loaded, device,
                          lambda: InceptionV3(cached_state_dict(inception_file())))
