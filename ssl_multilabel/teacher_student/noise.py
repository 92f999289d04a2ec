"""Student noise for Noisy Student: stochastic depth, RandAugment or a flip and shift on the inputs, head dropout.

The paper's three kinds of noise (Xie et al., CVPR 2020), and a weak input noise of our own:

- **input noise**: RandAugment with `N = 2` operations at a given magnitude, applied to the
  *student's* training images only (:func:`student_augment`, passed to `make_dataset` as
  `augment`); the teacher labels clean images;
- **weak input noise** (off by default): a random flip and a small shift
  (:func:`weak_augment`, the `flip_shift` setting), FixMatch's weak view;
- **model noise**: dropout on the classification head (a `build_classifier` argument) and
  stochastic depth (:class:`StochasticDepth`), whose survival probability decays linearly from
  1 at the input to 0.8 at the last block (:func:`survival_probabilities`).

All noise is inactive at inference (`training=False`), so a student saved with these layers
predicts exactly as the same network without them.

RandAugment and one-channel images: Keras 3's `keras.layers.RandAugment` (shear, translation,
rotation, brightness, colour degeneration, contrast, sharpness, posterisation, solarisation,
auto-contrast, equalisation) runs on `(h, w, 1)` float images in [0, 255] as well as on RGB,
so grey fashion-mosaics need no special case (checked with Keras 3.15).
"""

from __future__ import annotations

import logging
import math
import numbers
from typing import Any, Callable

import keras
from keras import ops

from ssl_multilabel.models import SMALL_CNN_FILTERS, SMALL_CNN_POOLS, BackbonePreprocessing, StochasticDepth

logger = logging.getLogger(__name__)

__all__ = [
    "StochasticDepth",
    "build_residual_cnn",
    "build_student_classifier",
    "student_augment",
    "survival_probabilities",
    "weak_augment",
]


def survival_probabilities(num_blocks: int, last: float = 0.8) -> list[float]:
    """The linear-decay rule: block `l` of `L` keeps its residual with `1 - (l / L) (1 - last)`.

    Args:
        num_blocks: number of residual blocks `L >= 0`.
        last: survival probability of the last block (the paper uses 0.8), in (0, 1].

    Returns:
        `L` floats, decreasing from close to 1 to `last`.

    Example:
        >>> survival_probabilities(4, 0.8)
        [0.95, 0.9, 0.85, 0.8]
    """
    if isinstance(num_blocks, bool) or not isinstance(num_blocks, numbers.Integral) or num_blocks < 0:
        raise ValueError(f"Invalid value for argument `num_blocks`. Expected an int >= 0. Received: num_blocks={num_blocks!r}")
    if isinstance(last, bool) or not isinstance(last, numbers.Real) or not 0.0 < float(last) <= 1.0:
        raise ValueError(f"Invalid value for argument `last`. Expected a float in (0, 1]. Received: last={last!r}")
    return [round(1.0 - (l / num_blocks) * (1.0 - float(last)), 12) for l in range(1, num_blocks + 1)]


def student_augment(
    magnitude: float = 0.5,
    num_ops: int = 2,
    seed: int | None = None,
    value_range: tuple[float, float] = (0.0, 255.0),
) -> Callable[[Any], Any]:
    """RandAugment for the student's training images, as a `make_dataset(augment=...)` callable.

    Args:
        magnitude: strength of every operation in [0, 1], Keras' `factor`: roughly the paper's
            integer magnitude `M` divided by 30 (M = 27 for its largest model, ~0.9 here).
        num_ops: operations per image (the paper's `N = 2`).
        seed: seed of the augmentation's random generator.
        value_range: the pixel range of the images (the pipeline yields [0, 255]).

    Returns:
        A function `images -> images` on one float32 `(h, w, c)` image or a batch
        `(b, h, w, c)` (c = 1 or 3), always in training mode; the layer is never part of a
        model, so inference never augments.

    Example:
        >>> from ssl_multilabel.data import make_dataset
        >>> ds = make_dataset(images, labels, augment=student_augment(0.5), shuffle=True, seed=0)  # doctest: +SKIP
    """
    if isinstance(magnitude, bool) or not isinstance(magnitude, numbers.Real) or not 0.0 <= float(magnitude) <= 1.0:
        raise ValueError(f"Invalid value for argument `magnitude`. Expected a float in [0, 1]. Received: magnitude={magnitude!r}")
    if isinstance(num_ops, bool) or not isinstance(num_ops, numbers.Integral) or num_ops < 0:
        raise ValueError(f"Invalid value for argument `num_ops`. Expected an int >= 0. Received: num_ops={num_ops!r}")
    low, high = value_range
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"Invalid value for argument `value_range`. Expected (low, high) with low < high. Received: {value_range!r}")
    layer = keras.layers.RandAugment(
        value_range=(float(low), float(high)), num_ops=int(num_ops), factor=float(magnitude), seed=seed
    )

    def augment(image: Any) -> Any:
        # RandAugment's interpolation can overshoot the range slightly: clip back into it.
        return ops.clip(layer(image, training=True), low, high)

    augment.layer = layer  # type: ignore[attr-defined]  # exposed for inspection and tests
    return augment


def weak_augment(shift: float = 0.125, seed: int | None = None) -> Callable[[Any], Any]:
    """Weak, label-preserving input noise: a random horizontal flip and a random shift.

    The weak augmentation of FixMatch (Sohn et al., NeurIPS 2020): flip left-right with
    probability 1/2, then translate by up to `shift` of the height and of the width, filling the
    border by reflection. Unlike RandAugment's cutout-like and colour operations, it keeps most of
    every object in the frame, so the labels of a multi-label image stay true (a shift of 1/8
    moves a 2x2 mosaic's tile by a quarter of its size).

    Args:
        shift: the largest shift as a fraction of the height and width, in [0, 0.5]; 0: flip only.
        seed: seed of the augmentation's random generators.

    Returns:
        A function `images -> images` on one float32 `(h, w, c)` image or a batch `(b, h, w, c)`,
        always in training mode.

    Example:
        >>> from ssl_multilabel.data import make_dataset
        >>> ds = make_dataset(images, labels, augment=weak_augment(0.125), shuffle=True, seed=0)  # doctest: +SKIP
    """
    if isinstance(shift, bool) or not isinstance(shift, numbers.Real) or not 0.0 <= float(shift) <= 0.5:
        raise ValueError(f"Invalid value for argument `shift`. Expected a float in [0, 0.5]. Received: shift={shift!r}")
    flip = keras.layers.RandomFlip("horizontal", seed=seed)
    translate = None if float(shift) == 0 else keras.layers.RandomTranslation(
        float(shift), float(shift), fill_mode="reflect", seed=None if seed is None else seed + 1)

    def augment(image: Any) -> Any:
        image = flip(image, training=True)
        return image if translate is None else translate(image, training=True)

    return augment


# === A residual small CNN with stochastic depth (the student of the small-CNN teacher) ===



def build_residual_cnn(
    input_shape: tuple[int, int, int] = (56, 56, 1),
    *,
    filters: tuple[int, ...] = SMALL_CNN_FILTERS,
    pool_after: tuple[int, ...] = SMALL_CNN_POOLS,
    width: float = 1.0,
    survival_probability: float = 0.8,
    seed: int | None = None,
    name: str = "backbone",
) -> keras.Model:
    """The small CNN of `ssl_multilabel.models` with residual blocks and stochastic depth.

    The first convolution is a plain stem; every later 3x3 convolution `i` becomes a residual
    block `StochasticDepth(p_i)([shortcut, relu(conv(x))])`, with an identity shortcut when the
    width does not change and a 1x1 projection when it does. `p_i` decays linearly to
    `survival_probability` at the last block (:func:`survival_probabilities`). `width`
    multiplies every filter count, for a student wider than its teacher.

    Args:
        input_shape: `(height, width, channels)` of the *preprocessed* input (in [0, 1]).
        filters: filters of each convolution (the small CNN's by default).
        pool_after: indices of the convolutions followed by 2x2 max pooling.
        width: width multiplier (`>= 0.1`); filters are rounded to ints, at least 1.
        survival_probability: survival of the last block; 1.0 disables stochastic depth.
        seed: base seed of the stochastic-depth layers (block `i` uses `seed + i`).
        name: model name.

    Returns:
        A `keras.Model` mapping images to a `(batch, h, w, channels)` feature map.

    Example:
        >>> cnn = build_residual_cnn((28, 28, 1), width=2.0)
        >>> cnn.output_shape
        (None, 3, 3, 256)
    """
    if isinstance(width, bool) or not isinstance(width, numbers.Real) or not float(width) >= 0.1:
        raise ValueError(f"Invalid value for argument `width`. Expected a float >= 0.1. Received: width={width!r}")
    if not filters:
        raise ValueError("Invalid value for argument `filters`. Expected at least one filter count. Received: ()")
    widths = [max(1, int(round(f * float(width)))) for f in filters]
    survival = survival_probabilities(len(widths) - 1, survival_probability)
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(widths[0], 3, padding="same", activation="relu", name="conv1")(inputs)
    if 0 in pool_after:
        x = keras.layers.MaxPooling2D(name="pool1")(x)
    for i in range(1, len(widths)):
        branch = keras.layers.Conv2D(widths[i], 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        shortcut = x
        if x.shape[-1] != widths[i]:
            shortcut = keras.layers.Conv2D(widths[i], 1, use_bias=False, name=f"proj{i + 1}")(x)
        x = StochasticDepth(
            survival[i - 1], seed=None if seed is None else int(seed) + i, name=f"stochastic_depth{i + 1}"
        )([shortcut, branch])
        if i in pool_after:
            x = keras.layers.MaxPooling2D(name=f"pool{i + 1}")(x)
    return keras.Model(inputs, x, name=name)


def build_student_classifier(
    num_labels: int,
    input_shape: tuple[int, int, int] = (56, 56, 1),
    *,
    width: float = 1.0,
    dropout: float = 0.5,
    survival_probability: float = 0.8,
    filters: tuple[int, ...] = SMALL_CNN_FILTERS,
    pool_after: tuple[int, ...] = SMALL_CNN_POOLS,
    activation: str | None = "sigmoid",
    seed: int | None = 0,
    name: str = "student_classifier",
) -> keras.Model:
    """A noised small-CNN student with the layer names of `models.build_classifier`.

    Layers: `preprocessing` (pixels / 255), `backbone` (:func:`build_residual_cnn`),
    `embedding` (global average pooling), `dropout` (head dropout, the paper's 0.2-0.5),
    `scores`. `models.build_embedding_model` and the propagation step work on it unchanged.

    Args:
        num_labels: number of labels.
        input_shape: `(height, width, channels)` of the images, float32 in [0, 255].
        width: width multiplier of the backbone (>= 1 for an equal-or-larger student).
        dropout: dropout rate before the output layer.
        survival_probability: stochastic-depth survival of the last block.
        filters: base filters (those of the teacher's small CNN).
        pool_after: convolutions followed by pooling.
        activation: `"sigmoid"` or None (logits).
        seed: global Keras seed set before building, None to leave it.
        name: model name.

    Returns:
        A functional `keras.Model` `(batch, *input_shape) -> (batch, num_labels)`.

    Example:
        >>> student = build_student_classifier(10, (56, 56, 1), width=1.5)
        >>> student.output_shape
        (None, 10)
    """
    if isinstance(num_labels, bool) or not isinstance(num_labels, numbers.Integral) or num_labels < 1:
        raise ValueError(f"Invalid value for argument `num_labels`. Expected a positive int. Received: num_labels={num_labels!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"Invalid value for argument `dropout`. Expected a float in [0, 1). Received: dropout={dropout!r}")
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    shape = tuple(int(d) for d in input_shape)
    base = build_residual_cnn(
        shape, filters=tuple(filters), pool_after=tuple(pool_after), width=width,
        survival_probability=survival_probability, seed=seed, name="backbone",
    )
    inputs = keras.Input(shape, name="image")
    x = BackbonePreprocessing("unit", name="preprocessing")(inputs)
    x = base(x)
    features = keras.layers.GlobalAveragePooling2D(name="embedding")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(features)
    outputs = keras.layers.Dense(int(num_labels), activation=activation, name="scores")(x)
    return keras.Model(inputs, outputs, name=name)
