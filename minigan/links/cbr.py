"""CBR: Convolution, Batch normalization, ReLU: the block chainer-pix2pix's U-Net and PatchGAN
discriminator are built from (Isola et al. 2017, "Image-to-Image Translation with Conditional
Adversarial Networks", section 6.1: "Ck denotes a Convolution-BatchNorm-ReLU layer with k
filters ... 4 x 4 spatial filters applied with stride 2")."""
import numpy

from .. import functions as F
from ..initializers import Normal
from .connection import Convolution2D, Deconvolution2D
from .link import Chain
from .normalization import BatchNormalization

# sample -> (layer, ksize, stride, pad): 'down' halves H and W, 'up' doubles them
SAMPLES = {
    "down": (Convolution2D, 4, 2, 1),
    "up": (Deconvolution2D, 4, 2, 1),
    "none-3x3": (Convolution2D, 3, 1, 1),
    "none-7x7": (Convolution2D, 7, 1, 3),
}


class CBR(Chain):
    """conv (or transposed conv) -> batch norm (optional) -> dropout 0.5 (optional, training
    only) -> activation (None for none); weights N(0, 0.02^2) as in pix2pix."""

    def __init__(self, in_channels, out_channels, sample="down", bn=True, activation=F.relu,
                 dropout=False, initialW=None, dtype=numpy.float32):
        super().__init__()
        if sample not in SAMPLES:
            raise ValueError(f"CBR: sample must be one of {sorted(SAMPLES)}, got {sample!r}")
        layer, ksize, stride, pad = SAMPLES[sample]
        self.activation, self.dropout = activation, dropout
        # names as in chainer-pix2pix (c, batchnorm), so its weights map one to one
        self.c = layer(in_channels, out_channels, ksize, stride, pad,
                       initialW=initialW if initialW is not None else Normal(0.02), dtype=dtype)
        self.batchnorm = BatchNormalization(out_channels, dtype=dtype) if bn else None

    def forward(self, x):
        h = self.c(x)
        if self.batchnorm is not None:
            h = self.batchnorm(h)
        if self.dropout:
            h = F.dropout(h, 0.5)      # the identity outside training
        if self.activation is not None:
            h = self.activation(h)
        return h
