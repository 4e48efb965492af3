"""Which device a training process uses, and the per-process GPU settings that go with it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DeviceSetup:
    name: str  # the GPU's name, or "CPU"
    mixed_precision: bool
    warnings: list[str] = field(default_factory=list)


def setup_device(mixed_precision: bool) -> DeviceSetup:
    """Enable GPU memory growth, pick mixed precision where it can run, and name the device.

    Call once per process, before building a network: TensorFlow fixes these at first GPU use.
    """
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # Grow on demand instead of grabbing the whole card, so several jobs can share one.
        tf.config.experimental.set_memory_growth(gpu, True)
    warnings: list[str] = []
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        name = f"GPU: {details.get('device_name', gpus[0].name)}"
    else:
        name = "CPU"
    use_mixed = mixed_precision and bool(gpus)
    if mixed_precision and not gpus:
        warnings.append("mixed_precision was requested but this worker has no GPU; trained in float32")
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")
    return DeviceSetup(name=name, mixed_precision=use_mixed, warnings=warnings)
