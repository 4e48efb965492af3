"""Keras layers from a checked network graph: every argument comes from a validated field, never from a name.

Enum values are Keras identifiers, so they are passed as Keras' own strings (which makes a preset build exactly
what the hand-written builder built, initializer seeds included); everything else is a number or a flag.
"""

from __future__ import annotations

from typing import Any

import keras

from training.graph import layers as L
from training.graph.check import HeadShape
from training.graph.network import HEAD, IMAGE, INPUT, RESCALING, NetworkGraph, wire
from training.graph.vocabulary import Regularizer


def _regularizer(value: Regularizer | None) -> keras.regularizers.Regularizer | None:
    return None if value is None else keras.regularizers.L1L2(l1=value.l1, l2=value.l2)


def _factor(value: float | list[float] | None) -> float | tuple[float, float] | None:
    return tuple(value) if isinstance(value, list) else value  # type: ignore[return-value]


def _size(value: int | list[int] | None) -> int | tuple[int, int] | None:
    return tuple(value) if isinstance(value, list) else value  # type: ignore[return-value]


def _convolution(layer: L._Convolution) -> dict[str, Any]:
    return {
        "kernel_size": _size(layer.kernel_size),
        "strides": _size(layer.strides),
        "padding": str(layer.padding),
        "activation": str(layer.activation),
        "use_bias": layer.use_bias,
        "bias_initializer": str(layer.bias_initializer),
        "bias_regularizer": _regularizer(layer.bias_regularizer),
    }


def _geometric(layer: L._Geometric) -> dict[str, Any]:
    return {
        "fill_mode": str(layer.fill_mode),
        "interpolation": str(layer.interpolation),
        "fill_value": layer.fill_value,
    }


def keras_layer(layer: L.LayerBase, name: str) -> keras.layers.Layer:
    """The Keras layer for one validated layer of a graph."""
    match layer:
        case L.Dense():
            return keras.layers.Dense(
                layer.units,
                activation=str(layer.activation),
                use_bias=layer.use_bias,
                kernel_initializer=str(layer.kernel_initializer),
                bias_initializer=str(layer.bias_initializer),
                kernel_regularizer=_regularizer(layer.kernel_regularizer),
                bias_regularizer=_regularizer(layer.bias_regularizer),
                name=name,
            )
        case L.Conv2D():
            return keras.layers.Conv2D(
                layer.filters,
                dilation_rate=_size(layer.dilation_rate),
                kernel_initializer=str(layer.kernel_initializer),
                kernel_regularizer=_regularizer(layer.kernel_regularizer),
                name=name,
                **_convolution(layer),
            )
        case L.SeparableConv2D():
            return keras.layers.SeparableConv2D(
                layer.filters,
                dilation_rate=_size(layer.dilation_rate),
                depth_multiplier=layer.depth_multiplier,
                depthwise_initializer=str(layer.depthwise_initializer),
                pointwise_initializer=str(layer.pointwise_initializer),
                depthwise_regularizer=_regularizer(layer.depthwise_regularizer),
                pointwise_regularizer=_regularizer(layer.pointwise_regularizer),
                name=name,
                **_convolution(layer),
            )
        case L.DepthwiseConv2D():
            return keras.layers.DepthwiseConv2D(
                dilation_rate=_size(layer.dilation_rate),
                depth_multiplier=layer.depth_multiplier,
                depthwise_initializer=str(layer.depthwise_initializer),
                depthwise_regularizer=_regularizer(layer.depthwise_regularizer),
                name=name,
                **_convolution(layer),
            )
        case L.Conv2DTranspose():
            return keras.layers.Conv2DTranspose(
                layer.filters,
                kernel_initializer=str(layer.kernel_initializer),
                kernel_regularizer=_regularizer(layer.kernel_regularizer),
                name=name,
                **_convolution(layer),
            )
        case L.MaxPooling2D() | L.AveragePooling2D():
            pooling = keras.layers.MaxPooling2D if isinstance(layer, L.MaxPooling2D) else keras.layers.AveragePooling2D
            return pooling(_size(layer.pool_size), strides=_size(layer.strides), padding=str(layer.padding), name=name)
        case L.GlobalAveragePooling2D():
            return keras.layers.GlobalAveragePooling2D(keepdims=layer.keepdims, name=name)
        case L.GlobalMaxPooling2D():
            return keras.layers.GlobalMaxPooling2D(keepdims=layer.keepdims, name=name)
        case L.Flatten():
            return keras.layers.Flatten(name=name)
        case L.Reshape():
            return keras.layers.Reshape(tuple(layer.target_shape), name=name)
        case L.Dropout():
            return keras.layers.Dropout(layer.rate, name=name)
        case L.SpatialDropout2D():
            return keras.layers.SpatialDropout2D(layer.rate, name=name)
        case L.BatchNormalization():
            return keras.layers.BatchNormalization(
                momentum=layer.momentum, epsilon=layer.epsilon, center=layer.center, scale=layer.scale, name=name
            )
        case L.LayerNormalization():
            return keras.layers.LayerNormalization(
                epsilon=layer.epsilon, center=layer.center, scale=layer.scale, name=name
            )
        case L.ActivationLayer():
            return keras.layers.Activation(str(layer.activation), name=name)
        case L.Rescaling():
            return keras.layers.Rescaling(layer.scale, offset=layer.offset, name=name)
        case L.Resizing():
            return keras.layers.Resizing(
                layer.height,
                layer.width,
                interpolation=str(layer.interpolation),
                crop_to_aspect_ratio=layer.crop_to_aspect_ratio,
                name=name,
            )
        case L.Add():
            return keras.layers.Add(name=name)
        case L.Concatenate():
            return keras.layers.Concatenate(axis=layer.axis, name=name)
        case L.RandomFlip():
            return keras.layers.RandomFlip(str(layer.mode), name=name)
        case L.RandomRotation():
            return keras.layers.RandomRotation(_factor(layer.factor), name=name, **_geometric(layer))
        case L.RandomZoom():
            return keras.layers.RandomZoom(
                _factor(layer.height_factor), _factor(layer.width_factor), name=name, **_geometric(layer)
            )
        case L.RandomTranslation():
            return keras.layers.RandomTranslation(
                _factor(layer.height_factor), _factor(layer.width_factor), name=name, **_geometric(layer)
            )
        case L.RandomContrast():
            return keras.layers.RandomContrast(_factor(layer.factor), value_range=tuple(layer.value_range), name=name)
        case L.Backbone():
            raise TypeError("a Backbone is built for its input's shape: use backbone()")
    raise TypeError(f"no Keras layer for {type(layer).__name__}")  # a new layer type without its case here


def backbone(layer: L.Backbone, name: str, input_shape: tuple[int, ...]) -> keras.Model:
    """The Keras application without its top, named as the graph's layer, frozen unless trainable.

    weights 'imagenet' is fetched by Keras' own download into its cache (KERAS_HOME), on the worker that builds it.
    """
    application = getattr(keras.applications, str(layer.architecture))  # an enum member: one of three names
    model: keras.Model = application(
        include_top=False,
        weights=None if layer.weights is None else str(layer.weights),
        input_shape=input_shape,
        pooling=None if layer.pooling is None else str(layer.pooling),
        name=name,
    )
    model.trainable = layer.trainable
    return model


def build_graph(graph: NetworkGraph, input_shape: tuple[int, ...], head: HeadShape | None, name: str) -> keras.Model:
    """image (raw 0..255) -> rescaling to 0..1 -> the graph -> the head (float32, for mixed precision)."""
    wiring = wire(graph)
    if isinstance(wiring, list):
        raise ValueError("; ".join(str(e) for e in wiring))
    inputs = keras.Input(shape=input_shape, name=IMAGE)
    # Rescaling inside the network means prediction needs no separate scaling step to match training.
    tensors = {INPUT: keras.layers.Rescaling(1.0 / 255, name=RESCALING)(inputs)}
    for i in wiring.order:
        layer, taken = graph.layers[i], [tensors[source] for source in wiring.sources[i]]
        if isinstance(layer, L.Backbone):  # an application is built for its input's shape
            tensors[wiring.names[i]] = backbone(layer, wiring.names[i], tuple(taken[0].shape[1:]))(taken[0])
            continue
        tensors[wiring.names[i]] = keras_layer(layer, wiring.names[i])(taken if layer.many_inputs else taken[0])
    outputs = tensors[wiring.names[-1]]
    if head is not None:
        outputs = keras.layers.Dense(head.units, activation=str(head.activation), dtype="float32", name=HEAD)(outputs)
    return keras.Model(inputs, outputs, name=name)
