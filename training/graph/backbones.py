"""What each Backbone architecture costs, as numbers measured once from Keras: the check builds none of them.

Parameters are exact. Keras' application without its top has a fixed count apart from its first convolution (and,
for EfficientNetB0, its input Normalization), which grows with the input's channels; pooling adds none. The counts
are `base + per_channel x channels` for trainable and non-trainable weights alike, measured from
keras.applications 3 at 1 and 3 channels; tests/test_network_graph.py builds each and holds the table to it.

FLOPs and the values held inside are approximations: measured at 224x224x3 by the service's convention (2 x the
multiply-adds of every convolution, every other layer counted as its output size; every inner layer's output but
the last) and scaled by the input's area. Every stage halves with rounding up, so the output is
ceil(height / 32) x ceil(width / 32), exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.graph.vocabulary import BackboneArchitecture

MEASURED_AREA = 224 * 224  # the input the FLOPs and inner values were measured at
TOTAL_STRIDE = 32


def feature_side(length: int) -> int:
    """The last feature map's height (or width) for an input's: each of the five stages halves it, rounding up."""
    return -(-length // TOTAL_STRIDE)


@dataclass(frozen=True)
class BackboneFigures:
    min_side: int  # Keras refuses a smaller height or width (imagenet_utils.obtain_input_shape's min_size)
    channels: int  # of the last feature map
    trainable: int  # weights apart from those per input channel
    trainable_per_channel: int
    non_trainable: int  # BatchNormalization's moving statistics; EfficientNetB0's Normalization
    non_trainable_per_channel: int
    flops_at_224: int
    inner_values_at_224: int


BACKBONES: dict[BackboneArchitecture, BackboneFigures] = {
    # Conv1: 3x3 x channels x 32, no bias.
    BackboneArchitecture.MOBILENET_V2: BackboneFigures(32, 1280, 2_223_008, 288, 34_112, 0, 613_973_584, 21_600_432),
    # conv1_conv: 7x7 x channels x 64, with bias.
    BackboneArchitecture.RESNET50: BackboneFigures(32, 2048, 23_525_184, 3136, 53_120, 0, 7_738_229_996, 36_866_284),
    # stem_conv: 3x3 x channels x 32, no bias; the input Normalization: a mean and a variance per channel, a count.
    BackboneArchitecture.EFFICIENTNET_B0: BackboneFigures(32, 1280, 4_006_684, 288, 42_017, 2, 787_285_475, 24_900_287),
}
