"""The names of `models.BACKBONES`, importable without TensorFlow: recipe steps validate against them.

`tests/test_models.py` checks that this tuple and `models.BACKBONES` name the same families in the
same order, so a family added to one cannot be missing from the other.
"""

BACKBONE_NAMES = (
    "small_cnn",
    "mobilenet",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "resnet50",
)
