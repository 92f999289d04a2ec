"""Backbones, the multi-label classifier head and the embedding model.

`build_classifier` returns a Keras functional model that takes images as float32 in
`[0, 255]` (the contract of `ssl_multilabel.data.make_dataset`) and returns one score per
label. Everything a backbone needs (rescaling, ImageNet normalisation, grayscale to RGB) is a
layer *inside* the model, so a saved `.keras` file or SavedModel is usable on raw pixels.

Layers of the classifier (names are part of the contract):

* `preprocessing` -- a `BackbonePreprocessing` layer,
* `backbone` -- a nested `keras.Model` returning a feature map,
* `embedding` -- global average pooling of the feature map (the penultimate features,
  used by `build_embedding_model` for label propagation),
* `dropout` -- dropout on the embedding (student noise),
* `scores` -- the dense output layer (`sigmoid` probabilities by default, or logits).

`with_neighbour_vote` adds one more output layer, `neighbour_vote` (a `NeighbourVote`): the
scores blended with a kNN vote over the training images' embeddings (the `NeighbourVote` step).
"""

from __future__ import annotations

import logging
import numbers
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
from keras import layers, ops

# Imported for their registrations: a step's compiled model names the library's masked losses and
# metrics (the layers, StochasticDepth included, are defined here), so `keras.models.load_model`
# and `load_model` below need them registered once this module is (docs/recipes.md).
from ssl_multilabel import losses as _losses, metrics as _metrics  # noqa: F401
from ssl_multilabel.propagation.defaults import DEFAULT_GAMMA, DEFAULT_K, VOTE_WEIGHT

logger = logging.getLogger(__name__)

__all__ = [
    "BACKBONES",
    "backbone_family",
    "BackbonePreprocessing",
    "build_classifier",
    "build_embedding_model",
    "build_small_cnn",
    "check_classifier",
    "frozen_backbone",
    "head_model",
    "load_model",
    "NeighbourVote",
    "outputs_logits",
    "stochastic_depth_kwargs",
    "StochasticDepth",
    "takes_a_vote",
    "width_kwargs",
    "with_neighbour_vote",
    "with_new_head",
]

_PACKAGE = "ssl_multilabel"

# === Preprocessing ===

# The per-channel means of the "caffe" mode of `keras.applications.imagenet_utils`, in BGR order.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_MODES = ("unit", "tf", "caffe", "none")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BackbonePreprocessing(layers.Layer):
    """Map images in `[0, 255]` to what a backbone expects, inside the model.

    Args:
        mode: `"unit"` divides by 255 (the small CNN); `"tf"` maps to `[-1, 1]` (MobileNet,
            MobileNetV2: `keras.applications.mobilenet.preprocess_input`); `"caffe"` swaps RGB to
            BGR and subtracts the ImageNet means (ResNet50); `"none"` passes pixels through
            (MobileNetV3 and EfficientNet rescale inside their own graph).
        channels: number of channels the backbone expects, or `None` to keep the input's.
            A 1-channel input is repeated to 3 channels when `channels=3`, which is how a
            grayscale image is fed to an ImageNet backbone.

    Example:
        >>> layer = BackbonePreprocessing("tf", channels=3)
        >>> tuple(layer(keras.ops.zeros((2, 8, 8, 1))).shape)
        (2, 8, 8, 3)
    """

    def __init__(self, mode: str = "unit", channels: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in _MODES:
            raise ValueError(f"Invalid value for argument `mode`. Expected one of {_MODES}. Received: mode={mode!r}")
        if channels is not None and channels not in (1, 3):
            raise ValueError(f"Invalid value for argument `channels`. Expected 1, 3 or None. Received: channels={channels!r}")
        self.mode = mode
        self.channels = channels

    def call(self, inputs: Any) -> Any:
        x = ops.cast(inputs, self.compute_dtype)
        in_channels = x.shape[-1]
        if self.channels == 3 and in_channels == 1:
            x = ops.repeat(x, 3, axis=-1)
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)
            return x - ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=x.dtype)
        return x

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        if self.channels == 3 and input_shape[-1] == 1:
            return (*input_shape[:-1], 3)
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"mode": self.mode, "channels": self.channels})
        return config



# === Student noise ===


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StochasticDepth(keras.layers.Layer):
    """Stochastic depth (Huang et al., ECCV 2016) for a residual block: `shortcut + b * residual`.

    Called on `[shortcut, residual]` (same shapes). In training, each *sample's* residual
    branch is kept with probability `survival_probability` and scaled by
    `1 / survival_probability` when kept (inverted scaling, like dropout and timm's
    `DropPath`), so the expected output equals the inference output `shortcut + residual`. At
    inference the layer is deterministic and adds the branch unchanged.

    Args:
        survival_probability: probability of keeping the residual branch, in (0, 1].
        seed: seed of the layer's random generator (None: a random seed).
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Example:
        >>> x = keras.Input((8, 8, 16))
        >>> branch = keras.layers.Conv2D(16, 3, padding="same")(x)
        >>> y = StochasticDepth(0.8)([x, branch])
    """

    def __init__(self, survival_probability: float = 0.8, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(survival_probability, bool) or not isinstance(survival_probability, numbers.Real):
            raise TypeError(
                "Invalid value for argument `survival_probability`. Expected a float in (0, 1]. "
                f"Received: survival_probability={survival_probability!r}"
            )
        if not 0.0 < float(survival_probability) <= 1.0:
            raise ValueError(
                "Invalid value for argument `survival_probability`. Expected a float in (0, 1]. "
                f"Received: survival_probability={survival_probability!r}"
            )
        self.survival_probability = float(survival_probability)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                "StochasticDepth expects a list [shortcut, residual] of two tensors. "
                f"Received: {type(inputs).__name__} of length {len(inputs) if isinstance(inputs, (list, tuple)) else 'n/a'}"
            )
        shortcut, residual = inputs
        if not training or self.survival_probability == 1.0:
            return shortcut + residual
        batch = ops.shape(residual)[0]
        keep_shape = (batch,) + (1,) * (len(residual.shape) - 1)
        keep = keras.random.uniform(keep_shape, seed=self.seed_generator, dtype=residual.dtype)
        keep = ops.cast(keep < self.survival_probability, residual.dtype)
        return shortcut + residual * keep / self.survival_probability

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape[0]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "survival_probability": self.survival_probability, "seed": self.seed}


# === Backbones ===

#: Filters of the six convolutions of the small CNN, and the convolutions followed by pooling.
SMALL_CNN_FILTERS = (16, 32, 32, 64, 64, 128)
SMALL_CNN_POOLS = (0, 2, 4)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NeighbourVote(layers.Layer):
    """Blend a model's probabilities with a kNN vote over stored embeddings (cosine).

    Inputs `[embedding, probability]`; output `(1 - weight) * probability + weight * vote`. The
    vote of a query is `KNNLabelPropagation.predict_proba` with `metric="cosine"`: the
    `s ** gamma`-weighted mean of the `values` of its `k` most similar stored rows (`s` the
    cosine similarity clipped to [0, 1]), plus one pseudo-neighbour voting `prior` with
    `prior_mass` times the mean neighbour weight. The stored rows (`memory`, L2-normalised) and
    their `values` are non-trainable weights, so they are saved in the `.keras` file. With
    `centred`, a stored `mean` is subtracted from every query before its cosine (the memory was
    centred on it when stored).

    Args:
        n_memory, n_features, n_labels: shapes of the stored embeddings and their values.
        k: neighbours per query (at most `n_memory`).
        gamma: edge weight exponent.
        prior_mass: weight of the prior pseudo-neighbour, in mean neighbour weights.
        weight: share of the vote in the output, in (0, 1].
        centred: queries are centred on the stored `mean` (False in models saved before it existed).
    """

    def __init__(self, n_memory: int, n_features: int, n_labels: int, *, k: int, gamma: float, prior_mass: float,
                 weight: float, centred: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 < float(weight) <= 1.0:
            raise ValueError(f"Invalid value for argument `weight`: expected a number in (0, 1]. Received: weight={weight!r}")
        self.n_memory, self.n_features, self.n_labels = int(n_memory), int(n_features), int(n_labels)
        self.k, self.gamma, self.prior_mass, self.weight = int(k), float(gamma), float(prior_mass), float(weight)
        self.memory = self.add_weight(shape=(self.n_memory, self.n_features), initializer="zeros",
                                      trainable=False, name="memory")
        self.values = self.add_weight(shape=(self.n_memory, self.n_labels), initializer="zeros",
                                      trainable=False, name="values")
        self.prior = self.add_weight(shape=(self.n_labels,), initializer="zeros", trainable=False, name="prior")
        self.centred = bool(centred)
        if self.centred:
            self.mean = self.add_weight(shape=(self.n_features,), initializer="zeros", trainable=False, name="mean")

    def vote(self, embedding: Any) -> Any:
        """The kNN vote alone, `(batch, n_labels)`."""
        if self.centred:
            embedding = embedding - self.mean
        norm = ops.sqrt(ops.sum(ops.square(embedding), axis=-1, keepdims=True))
        query = embedding / ops.where(norm > 0, norm, 1.0)  # an all-zero row stays zero
        similarity, index = ops.top_k(ops.matmul(query, ops.transpose(self.memory)), min(self.k, self.n_memory))
        weights = ops.power(ops.clip(similarity, 0.0, 1.0), self.gamma)
        weighted = ops.einsum("bk,bkl->bl", weights, ops.take(self.values, index, axis=0))
        total = ops.sum(weights, axis=-1, keepdims=True)
        pseudo = self.prior_mass * total / float(min(self.k, self.n_memory))
        denominator = total + pseudo
        return ops.where(denominator > 0, (weighted + pseudo * self.prior) / ops.where(denominator > 0, denominator, 1.0),
                         self.prior)

    def call(self, inputs: Any) -> Any:
        embedding, probability = inputs
        return (1.0 - self.weight) * probability + self.weight * self.vote(embedding)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape[1]

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {
            "n_memory": self.n_memory, "n_features": self.n_features, "n_labels": self.n_labels, "k": self.k,
            "gamma": self.gamma, "prior_mass": self.prior_mass, "weight": self.weight, "centred": self.centred,
        }


def build_small_cnn(
    input_shape: tuple[int, int, int] = (56, 56, 3),
    *,
    filters: tuple[int, ...] = SMALL_CNN_FILTERS,
    pool_after: tuple[int, ...] = SMALL_CNN_POOLS,
    batch_norm: bool = False,
    name: str = "small_cnn",
) -> keras.Model:
    """A small 6-convolution CNN for tiny images (28-64 px), returning a feature map.

    The default is sized for the 56x56 fashion-mosaics: three 2x2 poolings bring 56 px down to
    7 px. Batch normalisation is off by default because on CPU it costs more than the
    convolutions at these resolutions (measured ~4x slower epochs) for no gain in our
    8-epoch runs, and because per-replica batch statistics would make distributed training
    differ from single-device training.

    Args:
        input_shape: `(height, width, channels)` of the *preprocessed* input (in `[0, 1]`).
        filters: number of filters of each 3x3 convolution.
        pool_after: indices of the convolutions followed by 2x2 max pooling.
        batch_norm: add batch normalisation after every convolution.
        name: model name.

    Returns:
        A `keras.Model` mapping `(batch, *input_shape)` to a `(batch, h, w, filters[-1])` map.

    Example:
        >>> cnn = build_small_cnn((56, 56, 1))
        >>> cnn.output_shape
        (None, 7, 7, 128)
    """
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, width in enumerate(filters):
        x = layers.Conv2D(
            width,
            3,
            padding="same",
            use_bias=not batch_norm,
            activation=None if batch_norm else "relu",
            # He initialisation keeps the activation variance through the ReLU stack; with the
            # Glorot default and no batch norm, some seeds start (and stay) with near-constant
            # outputs (measured: 1 of 3 seeds collapsed to AUC 0.5 on fashion-mosaics).
            kernel_initializer="he_uniform",
            name=f"conv{i + 1}",
        )(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
            x = layers.ReLU(name=f"relu{i + 1}")(x)
        if i in pool_after:
            x = layers.MaxPooling2D(name=f"pool{i + 1}")(x)
    return keras.Model(inputs, x, name=name)


@dataclass(frozen=True)
class _BackboneSpec:
    """How to build one backbone family and what input it expects."""

    factory: Callable[..., keras.Model] | None  # None: the small CNN
    mode: str  # the BackbonePreprocessing mode
    min_size: int  # smallest height/width the family accepts
    extra_kwargs: tuple[tuple[str, Any], ...] = ()


def _app(name: str) -> Callable[..., keras.Model]:
    # Resolved lazily so that `keras.applications` is only touched when the family is used.
    return lambda **kwargs: getattr(keras.applications, name)(**kwargs)


#: Backbone names accepted by `build_classifier`.
BACKBONES: dict[str, _BackboneSpec] = {
    "small_cnn": _BackboneSpec(None, "unit", 8),
    "mobilenet": _BackboneSpec(_app("MobileNet"), "tf", 32),
    "mobilenet_v2": _BackboneSpec(_app("MobileNetV2"), "tf", 32),
    # MobileNetV3 and EfficientNet rescale [0, 255] inputs inside their own graph.
    "mobilenet_v3_small": _BackboneSpec(_app("MobileNetV3Small"), "none", 32, (("include_preprocessing", True),)),
    "mobilenet_v3_large": _BackboneSpec(_app("MobileNetV3Large"), "none", 32, (("include_preprocessing", True),)),
    "efficientnet_b0": _BackboneSpec(_app("EfficientNetB0"), "none", 32),
    "efficientnet_b1": _BackboneSpec(_app("EfficientNetB1"), "none", 32),
    "efficientnet_b2": _BackboneSpec(_app("EfficientNetB2"), "none", 32),
    "efficientnet_b3": _BackboneSpec(_app("EfficientNetB3"), "none", 32),
    "resnet50": _BackboneSpec(_app("ResNet50"), "caffe", 32),
}


def _check_input_shape(input_shape: Any, spec: _BackboneSpec, backbone: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise TypeError(
            f"Invalid value for argument `input_shape`. Expected a tuple (height, width, channels) "
            f"of ints. Received: input_shape={input_shape!r}"
        ) from None
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(
            f"Invalid value for argument `input_shape`. Expected (height, width, channels) with "
            f"positive sizes. Received: input_shape={input_shape!r}"
        )
    if shape[2] not in (1, 3) and spec.factory is not None:
        raise ValueError(
            f"Invalid value for argument `input_shape`: backbone {backbone!r} takes 1 (grayscale, "
            f"repeated to RGB) or 3 channels. Received: input_shape={input_shape!r}"
        )
    if min(shape[:2]) < spec.min_size:
        raise ValueError(
            f"Invalid value for argument `input_shape`: backbone {backbone!r} needs images of at "
            f"least {spec.min_size}x{spec.min_size} pixels. Received: input_shape={input_shape!r}"
        )
    return shape  # type: ignore[return-value]


def _build_backbone(
    backbone: str,
    spec: _BackboneSpec,
    shape: tuple[int, int, int],
    weights: str | os.PathLike | None,
    backbone_kwargs: Mapping[str, Any],
) -> keras.Model:
    if spec.factory is None:
        if weights is not None:
            raise ValueError(
                "Invalid value for argument `weights`: the small CNN has no pretrained weights; "
                f"use weights=None (or load a saved classifier). Received: weights={weights!r}"
            )
        return build_small_cnn(shape, **backbone_kwargs)
    kwargs = dict(spec.extra_kwargs)
    kwargs.update(backbone_kwargs)
    kwargs.update(include_top=False, input_shape=(shape[0], shape[1], 3), pooling=None)
    if weights is None:
        return spec.factory(weights=None, **kwargs)
    if weights == "imagenet":
        # Keras' own download path (cached in ~/.keras/models); kept for users.
        try:
            return spec.factory(weights=weights, **kwargs)
        except Exception as err:  # Keras raises a bare Exception("URL fetch failure on ...")
            if "URL fetch failure" not in str(err):
                raise
            raise ConnectionError(
                f"Downloading the ImageNet weights of backbone {backbone!r} failed ({str(err).splitlines()[0]}). "
                f"Without a network, give a local weights file of the same architecture instead of 'imagenet' "
                f"(a *_notop .weights.h5 file; in a recipe: --set supervised.weights=PATH)."
            ) from None
    path = Path(weights)
    if not path.is_file():
        raise ValueError(
            f"Invalid value for argument `weights`. Expected None, 'imagenet' or the path of an "
            f"existing weights file. Received: weights={str(weights)!r} (file not found)"
        )
    model = spec.factory(weights=None, **kwargs)
    try:
        with warnings.catch_warnings():
            # A mismatched file makes Keras warn once per layer before it raises.
            warnings.simplefilter("ignore", UserWarning)
            model.load_weights(str(path))
    except Exception as error:  # Keras raises ValueError or h5py/KeyError on mismatched files
        # Keras' message embeds whole weight tensors: keep its first line only.
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        architecture = backbone + "".join(f", {k}={v!r}" for k, v in sorted(backbone_kwargs.items()))
        if backbone in ("mobilenet", "mobilenet_v2") and "alpha" not in backbone_kwargs:
            architecture += ", alpha=1.0"
        raise ValueError(
            f"Weights file {str(path)!r} does not fit the backbone it was loaded into: expected the "
            f"weights of {architecture} without its top (a *_notop.weights.h5 file of that "
            f"architecture and width; in a recipe set `width` to the file's alpha). Keras said: {reason}"
        ) from error
    return model


# === Classifier ===


def build_classifier(
    backbone: str,
    num_labels: int,
    input_shape: tuple[int, int, int] = (56, 56, 1),
    *,
    weights: str | os.PathLike | None = None,
    freeze: bool | None = None,
    dropout: float = 0.2,
    feature_noise: float = 0.0,
    l2: float = 0.0,
    activation: str | None = "sigmoid",
    backbone_kwargs: Mapping[str, Any] | None = None,
    seed: int | None = 0,
    name: str | None = None,
) -> keras.Model:
    """Build a multi-label classifier: preprocessing, backbone, pooled embedding, dense head.

    Args:
        backbone: one of `BACKBONES`: `"small_cnn"`, `"mobilenet"`, `"mobilenet_v2"`,
            `"mobilenet_v3_small"`, `"mobilenet_v3_large"`, `"efficientnet_b0"` ... `"_b3"`,
            `"resnet50"`.
        num_labels: number of labels `L` (size of the output).
        input_shape: `(height, width, channels)` of the images, float32 in `[0, 255]`.
            Grayscale (1 channel) is repeated to RGB inside the model for ImageNet backbones.
        weights: `None` (random init), `"imagenet"` (downloaded by Keras on first use) or the
            path of a Keras weights file of the backbone *without its top*
            (`include_top=False`), e.g. `mobilenet_v1_0.75_224_imagenet_notop.weights.h5`.
        freeze: freeze the backbone and run it with `training=False` (batch-norm statistics
            stay fixed, also after a later unfreeze for fine-tuning). `None` (default) freezes
            exactly when pretrained weights are loaded.
        dropout: dropout rate on the embedding before the output layer.
        feature_noise: standard deviation of Gaussian noise added to the embedding in
            training (a `feature_noise` layer; 0: none). A noisy student over a frozen
            backbone gets its model noise here and from `dropout`.
        l2: L2 penalty on the output layer's kernel, `l2 * sum(W**2)` added to the training loss
            (`keras.regularizers.L2`; 0: none). On a frozen backbone the head is a logistic
            regression per label and this is its regularization strength.
        activation: output activation, `"sigmoid"` (probabilities) or `None` (logits).
        backbone_kwargs: extra arguments of the backbone builder, e.g. `{"alpha": 0.75}` for
            MobileNet or `{"filters": (...)}` for the small CNN.
        seed: global Keras seed set before building (initialisation is reproducible);
            `None` leaves the random state alone.
        name: model name (default `"{backbone}_classifier"`).

    Returns:
        A functional `keras.Model` mapping `(batch, *input_shape)` images to `(batch, num_labels)`.

    Example:
        >>> model = build_classifier("small_cnn", num_labels=10, input_shape=(56, 56, 1))
        >>> model.output_shape
        (None, 10)
    """
    if not isinstance(backbone, str) or backbone not in BACKBONES:
        raise ValueError(
            f"Invalid value for argument `backbone`. Expected one of {sorted(BACKBONES)}. "
            f"Received: backbone={backbone!r}"
        )
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(f"Invalid value for argument `num_labels`. Expected a positive int. Received: num_labels={num_labels!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"Invalid value for argument `dropout`. Expected a float in [0, 1). Received: dropout={dropout!r}")
    if activation not in ("sigmoid", None):
        raise ValueError(
            f"Invalid value for argument `activation`. Expected 'sigmoid' or None (logits). "
            f"Received: activation={activation!r}"
        )
    _check_head_args(feature_noise, l2)
    spec = BACKBONES[backbone]
    shape = _check_input_shape(input_shape, spec, backbone)
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    if freeze is None:
        freeze = weights is not None
    if freeze and weights is None:
        logger.warning("freeze=True with weights=None: the backbone keeps its random initial weights.")

    channels = None if spec.factory is None else 3
    inner_shape = shape if channels is None else (shape[0], shape[1], 3)
    base = _build_backbone(backbone, spec, inner_shape, weights, dict(backbone_kwargs or {}))
    base.name = "backbone"  # a fixed name: build_embedding_model and users find it by name
    base.trainable = not freeze

    preprocessing = BackbonePreprocessing(spec.mode, channels=channels, name="preprocessing")
    return _assemble(shape, preprocessing, base, freeze, num_labels, dropout=dropout, feature_noise=feature_noise,
                     l2=l2, activation=activation, name=name or f"{backbone}_classifier")


def _check_head_args(feature_noise: float, l2: float) -> None:
    for arg, value in (("feature_noise", feature_noise), ("l2", l2)):
        if not float(value) >= 0.0:
            raise ValueError(f"Invalid value for argument `{arg}`. Expected a float >= 0. Received: {arg}={value!r}")


def _assemble(
    shape: tuple[int, ...],
    preprocessing: keras.layers.Layer,
    base: keras.Model,
    freeze: bool,
    num_labels: int,
    *,
    dropout: float,
    feature_noise: float,
    l2: float,
    activation: str | None,
    name: str,
) -> keras.Model:
    """image -> preprocessing -> backbone -> `embedding` -> [`feature_noise`] -> `dropout` -> `scores`."""
    inputs = keras.Input(shape, name="image")
    x = preprocessing(inputs)
    # training=False keeps batch-norm layers of a frozen backbone in inference mode (the
    # Keras fine-tuning recipe), also after a later unfreeze; an unfrozen backbone follows
    # the training flag of fit().
    x = base(x, training=False) if freeze else base(x)
    x = layers.GlobalAveragePooling2D(name="embedding")(x)
    if feature_noise > 0:
        x = layers.GaussianNoise(float(feature_noise), name="feature_noise")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    regularizer = keras.regularizers.L2(float(l2)) if l2 > 0 else None
    outputs = layers.Dense(num_labels, activation=activation, kernel_regularizer=regularizer, name="scores")(x)
    return keras.Model(inputs, outputs, name=name)


# === Frozen backbones: features and heads ===


def frozen_backbone(model: keras.Model) -> bool:
    """Whether `model` is a `build_classifier` model whose backbone is frozen.

    Its pooled `embedding` features then never change during training, so they can be
    computed once per image and cached (`ssl_multilabel.features`).
    """
    names = {layer.name for layer in model.layers}
    return {"backbone", "embedding", "scores"} <= names and not model.get_layer("backbone").trainable


def check_classifier(model: Any, what: str) -> None:
    """ValueError naming `what` unless `model` has the layers the library's steps build on (those of
    `models.build_classifier`): an `embedding` layer (the features the kNN steps use) and a last
    layer that is the `Dense` layer `scores` (or a neighbour vote over it)."""
    names = [layer.name for layer in getattr(model, "layers", [])]
    missing = [name for name in ("embedding", "scores") if name not in names]
    if not isinstance(model, keras.Model) or missing or names[-1] not in ("scores", "neighbour_vote") or \
            not isinstance(model.get_layer("scores"), keras.layers.Dense):
        found = f"layers {names[-3:]}" + (f", no {' or '.join(repr(m) for m in missing)} layer" if missing else "")
        raise ValueError(
            f"Invalid value for {what}: expected a classifier built by build_classifier, with an 'embedding' layer "
            f"and the Dense layer 'scores' as its output; got {type(model).__name__} with {found}."
        )


def head_model(classifier: keras.Model) -> keras.Model:
    """The layers of a classifier after its `embedding`, as a model on `(batch, d)` features.

    The head *shares* its layers with `classifier`: training the head on cached features
    trains the classifier's output layers, and the classifier stays a full image -> scores
    model.

    Example:
        >>> clf = build_classifier("small_cnn", 3)
        >>> head_model(clf).input_shape
        (None, 128)
    """
    check_classifier(classifier, "argument `classifier`")
    names = [layer.name for layer in classifier.layers]
    embedding = classifier.get_layer("embedding")
    if names[-1] == "neighbour_vote":  # two branches from the embedding: the head and the vote
        return keras.Model(embedding.output, classifier.output, name=f"{classifier.name}_head")
    x = inputs = keras.Input((int(embedding.output.shape[-1]),), name="features")
    for layer in classifier.layers[names.index("embedding") + 1:]:
        x = layer(x)
    return keras.Model(inputs, x, name=f"{classifier.name}_head")


def with_new_head(
    classifier: keras.Model,
    num_labels: int,
    *,
    dropout: float = 0.2,
    feature_noise: float = 0.0,
    l2: float = 0.0,
    activation: str | None = "sigmoid",
    seed: int | None = 0,
    name: str | None = None,
) -> keras.Model:
    """A classifier with the preprocessing and backbone of `classifier` (shared) and a fresh head.

    The noisy student over a frozen backbone: the same features, a new noised head. The head
    arguments are those of `build_classifier`.
    """
    _check_head_args(feature_noise, l2)
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    base = classifier.get_layer("backbone")
    return _assemble(tuple(classifier.input_shape[1:]), classifier.get_layer("preprocessing"), base,
                     not base.trainable, num_labels, dropout=dropout, feature_noise=feature_noise, l2=l2,
                     activation=activation, name=name or classifier.name)


def takes_a_vote(classifier: keras.Model) -> bool:
    """Whether `with_neighbour_vote` can blend a vote into `classifier`: its last layer is the
    `scores` layer (so it has no vote yet) and it outputs probabilities, not logits."""
    return classifier.layers[-1].name == "scores" and not outputs_logits(classifier)


def with_neighbour_vote(
    classifier: keras.Model,
    memory: Any,
    values: Any,
    prior: Any,
    *,
    k: int = DEFAULT_K,
    gamma: float = DEFAULT_GAMMA,
    prior_mass: float = 0.3,
    weight: float = VOTE_WEIGHT,
    mean: Any = None,
) -> keras.Model:
    """`classifier` (shared layers) with its probabilities blended with a kNN vote (`NeighbourVote`).

    Args:
        classifier: a `build_classifier` model with sigmoid `scores`.
        memory: `(n, d)` embeddings of the stored images (the classifier's `embedding` features).
        values: `(n, n_labels)` their scores in [0, 1] (known cells: their value).
        prior: `(n_labels,)` each label's prior probability.
        k, gamma, prior_mass, weight: as in `NeighbourVote`.
        mean: None, or `(d,)`: the vote compares `memory - mean` with each query minus `mean` (centred).

    Returns:
        A model image -> blended probabilities whose last layer is the `neighbour_vote` layer.
    """
    import numpy as np

    from ssl_multilabel.propagation.graph import prepare_features

    if not takes_a_vote(classifier):
        raise ValueError(f"Invalid value for argument `classifier`: model {classifier.name!r} must end in a "
                         "sigmoid 'scores' layer (a build_classifier model without a neighbour vote).")
    embedding = classifier.get_layer("embedding")
    if mean is not None:
        mean = np.asarray(mean, np.float32)
        if mean.shape != (np.shape(memory)[1],):
            raise ValueError(f"Invalid value for argument `mean`: expected shape ({np.shape(memory)[1]},), one value per "
                             f"feature of `memory`. Received shape {mean.shape}.")
        memory = np.asarray(memory, np.float32) - mean
    memory = prepare_features(memory, "cosine", name="memory")
    values = np.asarray(values, np.float32)
    prior = np.asarray(prior, np.float32)
    n_labels = int(classifier.output.shape[-1])
    if values.shape != (len(memory), n_labels) or prior.shape != (n_labels,) or \
            memory.shape[1] != int(embedding.output.shape[-1]):
        raise ValueError(
            f"Invalid shapes: memory {memory.shape}, values {values.shape}, prior {prior.shape}; expected "
            f"(n, {int(embedding.output.shape[-1])}), (n, {n_labels}) and ({n_labels},)."
        )
    vote = NeighbourVote(len(memory), memory.shape[1], n_labels, k=k, gamma=gamma, prior_mass=prior_mass,
                         weight=weight, centred=mean is not None, name="neighbour_vote")
    outputs = vote([embedding.output, classifier.output])
    vote.set_weights([memory, values, prior] + ([mean] if mean is not None else []))
    # `input`, not `inputs`: a list input made the SavedModel's `serve` take `[images]`, not `images`.
    return keras.Model(classifier.input, outputs, name=classifier.name)


def backbone_family(model: keras.Model) -> str | None:
    """The `BACKBONES` name a `build_classifier` model was built with (from its default name), or None."""
    family = model.name.removesuffix("_classifier")
    return family if family in BACKBONES else None


def stochastic_depth_kwargs(backbone: str, survival_probability: float) -> dict[str, Any]:
    """`backbone_kwargs` for stochastic depth with this survival probability at the last block.

    Keras' EfficientNet drops block b with rate `drop_connect_rate * b / blocks`: the paper's
    linear decay, survival `1 - rate` at the last block. The other `keras.applications` families
    have none (a warning says so); the small CNN's student has its own (`StochasticDepth`).
    """
    if backbone.startswith("efficientnet"):
        return {"drop_connect_rate": 1.0 - survival_probability}
    if survival_probability < 1.0:
        logger.warning("Backbone %r has no stochastic depth; the student keeps dropout and RandAugment.", backbone)
    return {}


def width_kwargs(backbone: str, width: float) -> dict[str, Any]:
    """`backbone_kwargs` that scale a backbone's width by `width` (1: the family default).

    The small CNN scales its filters; MobileNet v1 / v2 take `alpha`; other families grow by
    choosing a larger member (e.g. EfficientNet-B1 for B0).
    """
    if width == 1.0:
        return {}
    if backbone == "small_cnn":
        return {"filters": tuple(max(1, round(f * width)) for f in SMALL_CNN_FILTERS)}
    if backbone in ("mobilenet", "mobilenet_v2"):
        return {"alpha": float(width)}
    raise ValueError(
        f"Invalid value for argument `width`: it applies to 'small_cnn' and MobileNet v1/v2 (alpha); "
        f"backbone {backbone!r} grows by choosing a larger family member instead. Received: width={width!r}"
    )


def build_embedding_model(classifier: keras.Model) -> keras.Model:
    """The penultimate features of a classifier built by `build_classifier` (shared weights).

    Args:
        classifier: a model with a layer named `"embedding"` (every `build_classifier` model).

    Returns:
        A `keras.Model` mapping the classifier's input to `(batch, embedding_dim)` features
        (the global-average-pooled backbone output), for `ssl_multilabel.propagation`.

    Example:
        >>> clf = build_classifier("small_cnn", 10)
        >>> build_embedding_model(clf).output_shape
        (None, 128)
    """
    if not isinstance(classifier, keras.Model):
        raise TypeError(f"Invalid value for argument `classifier`. Expected a keras.Model. Received: {type(classifier).__name__}")
    try:
        layer = classifier.get_layer("embedding")
    except ValueError:
        raise ValueError(
            f"Invalid value for argument `classifier`: no layer named 'embedding' in model "
            f"{classifier.name!r}; expected a model built by build_classifier."
        ) from None
    return keras.Model(classifier.input, layer.output, name=f"{classifier.name}_embedding")


def outputs_logits(model: keras.Model) -> bool:
    """Whether `model` returns logits (its `scores` layer has no activation).

    Args:
        model: a classifier; models without a `scores` layer are assumed to return probabilities.

    Returns:
        `True` for a linear `scores` layer, else `False`.
    """
    try:
        layer = model.get_layer("scores")
    except ValueError:
        return False
    activation = getattr(layer, "activation", None)
    return activation is None or getattr(activation, "__name__", "") == "linear"


def load_model(path: str | os.PathLike, *, compile: bool = True) -> keras.Model:  # noqa: A002
    """Load a `.keras` file written by this package (registers the package's custom objects).

    Args:
        path: path of a `.keras` file (e.g. `run_dir/model.keras`).
        compile: restore the training configuration (loss, optimizer) as well.

    Returns:
        The loaded `keras.Model`.

    Example:
        >>> model = load_model("runs/quickstart/model.keras")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Invalid value for argument `path`: model file {str(path)!r} not found.")
    check_keras_archive(path)
    return keras.models.load_model(path, compile=compile)


def check_keras_archive(path: Path, what: str = "Model file") -> None:
    """Refuse a file that is no `.keras` archive, naming it: Keras reports a damaged (truncated)
    archive as "File not found"."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            valid = "config.json" in archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError):
        valid = False
    if not valid:
        raise ValueError(
            f"{what} {str(path)!r} is not a .keras model (expected a zip archive holding config.json): "
            "it is damaged or another kind of file; save or export the model again."
        )
