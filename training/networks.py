"""Network builders: pure functions from a spec to a compiled Keras network."""

from __future__ import annotations

import keras

from training.graph.build import build_graph
from training.graph.check import HeadShape
from training.graph.network import NetworkGraph
from training.graph.presets import PRESETS
from training.graph.vocabulary import LayerActivation
from training.labels import TargetEncoding, target_encoding
from training.spec import ExperimentSpec, Loss, Network, Optimizer


def _optimizer_options(spec: ExperimentSpec) -> dict[str, float]:
    """Weight decay and clipping, only where the spec sets them: an optimizer without them is built (and so
    configured) exactly as before they existed."""
    options = {"weight_decay": spec.weight_decay, "clipnorm": spec.clipnorm, "clipvalue": spec.clipvalue}
    return {name: value for name, value in options.items() if value is not None}


def build_optimizer(spec: ExperimentSpec) -> keras.optimizers.Optimizer:
    """A fresh Keras optimizer for `spec` (every Keras 3 optimizer takes weight_decay, clipnorm and clipvalue)."""
    rate, options = spec.resolved_learning_rate, _optimizer_options(spec)
    match spec.optimizer:
        case Optimizer.SGD:
            return keras.optimizers.SGD(learning_rate=rate, **options)
        case Optimizer.SGD_NESTEROV:
            return keras.optimizers.SGD(learning_rate=rate, momentum=0.9, nesterov=True, **options)
        case Optimizer.ADAGRAD:
            return keras.optimizers.Adagrad(learning_rate=rate, **options)
        case Optimizer.RMSPROP:
            return keras.optimizers.RMSprop(learning_rate=rate, **options)
        case Optimizer.ADADELTA:
            return keras.optimizers.Adadelta(learning_rate=rate, **options)
        case Optimizer.ADAM:
            return keras.optimizers.Adam(learning_rate=rate, **options)
        case Optimizer.ADAMW:
            return keras.optimizers.AdamW(learning_rate=rate, **options)


def build_loss(spec: ExperimentSpec, *, per_example: bool = False) -> str | keras.losses.Loss:
    """The spec's loss: its Keras name, or with label smoothing the loss object that smooths (the spec allows it
    for the two crossentropies that have it). `per_example`: unreduced, one value per example."""
    name = str(spec.resolved_loss)
    if spec.label_smoothing is None:
        return keras.losses.get(name) if per_example else name
    reduction = None if per_example else "sum_over_batch_size"
    if spec.resolved_loss is Loss.BINARY_CROSSENTROPY:
        return keras.losses.BinaryCrossentropy(label_smoothing=spec.label_smoothing, reduction=reduction)
    return keras.losses.CategoricalCrossentropy(label_smoothing=spec.label_smoothing, reduction=reduction)


def accuracy_metric(spec: ExperimentSpec) -> keras.metrics.Metric:
    """Accuracy that fits the head: binary at 0.5 for one unit, argmax for several."""
    match target_encoding(spec):
        case TargetEncoding.BINARY:
            return keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.5)
        case TargetEncoding.SPARSE:
            return keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        case TargetEncoding.ONE_HOT:
            return keras.metrics.CategoricalAccuracy(name="accuracy")


def build_network(spec: ExperimentSpec) -> keras.Model:
    """The uncompiled network for `spec`; it takes raw 0..255 pixels and rescales them itself."""
    head, network = spec.resolved_head, spec.resolved_network
    graph, called = (network, "graph") if isinstance(network, NetworkGraph) else (PRESETS[network], str(network))
    return build_graph(
        graph,
        spec.info.input_shape,
        HeadShape(head.units, LayerActivation(head.activation)),
        name=f"{spec.dataset}_{called}",
    )


def default_jit_compile(spec: ExperimentSpec, on_gpu: bool) -> bool:
    """Whether XLA pays off when the spec leaves it open: on a GPU, yes; on a CPU, no.

    Measured on 2 CPU cores (docs/results/performance.md): XLA doubles the convnet's epoch; it takes
    at most a sixth off the MLP's epoch (not in every run), but compiling it (two batch shapes each
    for training and validation) costs 6-10 s, which a short job never repays.
    """
    if spec.deterministic:
        return False  # TensorFlow has no deterministic XLA: Keras would turn it off with a warning
    return on_gpu


# Batches per call into the compiled step when batches are cheap: one Python round trip (callbacks,
# iterator, dispatch) per this many steps instead of per step, few enough that a stop request still lands
# within a fraction of a second.
STEPS_PER_EXECUTION = 32


def default_steps_per_execution(spec: ExperimentSpec, on_gpu: bool) -> int:
    """Steps per compiled call: many where a step is short (the MLP; anything on a GPU), one otherwise.

    It changes how often Python runs between steps, not what the steps compute: the same batches, in
    the same order, through the same updates (checked equal in the tests). A convnet step on a CPU takes
    over 100 ms, so grouping saves nothing measurable there and would delay a stop by seconds.
    """
    return STEPS_PER_EXECUTION if on_gpu or spec.resolved_network is Network.MLP else 1


def compile_network(
    network: keras.Model, spec: ExperimentSpec, *, jit_compile: bool = False, steps_per_execution: int = 1
) -> keras.Model:
    """Compile `network` with the spec's optimizer, loss and head-appropriate accuracy."""
    network.compile(
        optimizer=build_optimizer(spec),
        loss=build_loss(spec),
        metrics=[accuracy_metric(spec)],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return network
