"""Differentiable ops: `import minigan.functions as F`."""
from .activation import (elu, gelu, glu, leaky_relu, relu, relu6, sigmoid, softplus,  # noqa
                         swish, tanh)
from .array import (broadcast_to, cast, concat, expand_dims, flatten, get_item, pad,  # noqa
                    reshape, split_axis, squeeze, stack, sum_to, transpose, where)
from .connection import linear  # noqa
from .loss import (log_softmax, mean_absolute_error, mean_squared_error,  # noqa
                   sigmoid_cross_entropy, softmax, softmax_cross_entropy)
from .math import (abs, add, clip, div, erf, exp, log, logsumexp, matmul, max, mean, min,  # noqa
                   mul, neg, pow, sqrt, square, sub, sum)
from .noise import dropout, scaled_noise  # noqa
from .local import local_dot, local_mix, local_scatter  # noqa
from .convolution import convolution_2d, deconvolution_2d  # noqa
from .depthwise import depthwise_convolution_2d  # noqa
from .filter import blur  # noqa
from .normalization import (batch_normalization, fixed_batch_normalization,  # noqa
                            instance_normalization)
from .pooling import adaptive_average_pooling_2d, average_pooling_2d, max_pooling_2d  # noqa
from .resize import resize_images, upsample_nearest  # noqa
