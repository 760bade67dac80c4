"""Frozen pretrained networks for metrics and ProjectedGAN, and the safe reader of their weights."""
from .torch_pth import UnsafePickleError, WeightFileError, load_pth, load_state_dict  # noqa: F401
from .weights import (WeightsNotInstalled, cached_state_dict, download_inception,  # noqa: F401
                      home)
from .efficientnet_lite import EfficientNetLite0, efficientnet_lite0  # noqa: F401
from .inception import InceptionV3, inception_v3  # noqa: F401
