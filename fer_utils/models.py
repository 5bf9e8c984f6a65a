"""The report's CNN and the simple 3-layer CNN, built with the Keras functional API."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
from keras import layers, ops

from fer_utils.data import CLASSES, IMAGE_SIZE

INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)
# (filters, kernel size) of the report CNN's four conv blocks, and its two hidden dense widths.
REPORT_CONV = ((32, 3), (64, 5), (64, 3), (32, 3))
REPORT_DENSE = (256, 512)
# "[64, 128, 512]": two conv blocks of 64 and 128 filters (3x3), then a dense layer of 512 units that reads their
# 12x12 map max-pooled to 3x3 (upper, middle and lower face, left to right): 671,239 parameters, 2.7 MB to ship,
# where the 12x12 map flattened would need 9.5 million.
SIMPLE_CONV = (64, 128)
SIMPLE_POOL = 4
SIMPLE_DENSE = 512
DROPOUT = 0.25
# BatchNorm running statistics follow the batches with momentum 0.9 (Keras default 0.99): they then settle
# within the few hundred steps of a short CPU run instead of staying near their initial values.
BN_MOMENTUM = 0.9
LAST_CONV = {"report": "conv4", "simple": "conv2"}
# What the model does to its [0, 1] input first: nothing ("scale"), or standardise each image ("per_image").
INPUT_NORMS = ("scale", "per_image")


@keras.saving.register_keras_serializable(package="fer_utils")
class BatchNormalization(layers.BatchNormalization):
    """Keras' BatchNormalization, trained on 4-D inputs through TensorFlow's fused kernel: same maths, one op."""

    def call(self, inputs, training=None, mask=None):
        """Keras' own path, except a TensorFlow training step on NHWC images: FusedBatchNormV3 in float32."""
        if (keras.backend.backend() != "tensorflow" or not (training and self.trainable) or mask is not None
                or self.renorm or len(inputs.shape) != 4 or self.axis not in (-1, 3)
                or not (self.scale and self.center)):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf  # only this backend has the fused kernel; the others build the model without it

        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            tf.cast(inputs, tf.float32), self.gamma.value, self.beta.value, epsilon=self.epsilon, is_training=True)
        count = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], tf.float32)
        variance = variance * (count - 1.0) / count  # the kernel returns the unbiased variance; Keras keeps the biased
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(outputs, self.compute_dtype)


@keras.saving.register_keras_serializable(package="fer_utils")
class PerImageStandardization(layers.Layer):
    """Each image to zero mean and unit variance over its pixels, as tf.image.per_image_standardization; no weights."""

    def call(self, inputs):
        """(x - mean) / max(std, 1/sqrt(pixels)) per image: a blank image becomes zeros, not NaNs."""
        floor = ops.cast(1.0 / np.sqrt(np.prod(inputs.shape[1:])), inputs.dtype)
        mean = ops.mean(inputs, axis=(1, 2, 3), keepdims=True)
        std = ops.std(inputs, axis=(1, 2, 3), keepdims=True)
        return (inputs - mean) / ops.maximum(std, floor)


def model_input(input_norm: str = "scale"):
    """The image input and the tensor the first conv block reads: the input itself, or it standardised per image."""
    if input_norm not in INPUT_NORMS:
        raise ValueError(f"unknown input_norm {input_norm!r}; choose one of {INPUT_NORMS}")
    inputs = keras.Input(INPUT_SHAPE, name="image")
    if input_norm == "scale":
        return inputs, inputs
    return inputs, PerImageStandardization(name="standardize", dtype="float32")(inputs)  # float32 under bf16 too


def conv_block(x, filters: int, kernel: int, index: int, dropout: float = DROPOUT):
    """Conv2D('same') - BatchNorm - ReLU - MaxPool(2) - Dropout, with names ending in `index`."""
    x = layers.Conv2D(filters, kernel, padding="same", name=f"conv{index}")(x)
    x = BatchNormalization(momentum=BN_MOMENTUM, name=f"bn{index}")(x)
    x = layers.Activation("relu", name=f"relu{index}")(x)
    x = layers.MaxPooling2D(2, name=f"pool{index}")(x)
    return layers.Dropout(dropout, name=f"drop{index}")(x)


def dense_block(x, units: int, name: str, dropout: float = DROPOUT):
    """Dense - BatchNorm - ReLU - Dropout."""
    x = layers.Dense(units, name=name)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    return layers.Dropout(dropout, name=f"{name}_drop")(x)


def report_cnn(input_norm: str = "scale") -> keras.Model:
    """The report's CNN: 4 conv blocks, Dense 256 and 512, softmax over 7 classes (319,975 params)."""
    inputs, x = model_input(input_norm)
    for i, (filters, kernel) in enumerate(REPORT_CONV, start=1):
        x = conv_block(x, filters, kernel, i)
    x = layers.Flatten(name="flatten")(x)
    for units in REPORT_DENSE:
        x = dense_block(x, units, f"dense{units}")
    outputs = layers.Dense(len(CLASSES), activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="report_cnn")


def simple_cnn(input_norm: str = "scale") -> keras.Model:
    """A simple 3-layer CNN, [64, 128, 512]: two conv blocks (64, 128 filters), a 3x3 pooled map, Dense 512."""
    inputs, x = model_input(input_norm)
    for i, filters in enumerate(SIMPLE_CONV, start=1):
        x = conv_block(x, filters, 3, i)
    x = layers.MaxPooling2D(SIMPLE_POOL, name="pool_map")(x)
    x = layers.Flatten(name="flatten")(x)
    x = dense_block(x, SIMPLE_DENSE, f"dense{SIMPLE_DENSE}")
    outputs = layers.Dense(len(CLASSES), activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="simple_cnn")


BUILDERS = {"report": report_cnn, "simple": simple_cnn}


def build(name: str, input_norm: str = "scale") -> keras.Model:
    """A fresh model by name, 'report' or 'simple', reading its input as `input_norm` says (INPUT_NORMS)."""
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(BUILDERS)}")
    return BUILDERS[name](input_norm)


def layer_table(model: keras.Model) -> pd.DataFrame:
    """One row per layer: name, type, settings, output shape, parameters and the layers that feed it."""
    rows = []
    for layer in model.layers:
        shape = "×".join(str(d) for d in layer.output.shape[1:])
        trainable = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
        inputs = [t._keras_history.operation.name for node in layer._inbound_nodes for t in node.input_tensors]
        rows.append({"layer": layer.name, "type": type(layer).__name__, "details": _details(layer),
                     "output shape": shape, "params": layer.count_params(), "trainable": trainable,
                     "input from": ", ".join(inputs) or "-"})
    return pd.DataFrame(rows)


def _details(layer) -> str:
    """A layer's settings in a few characters: '3×3, 32, same', '256 units', 'rate 0.25'."""
    config = layer.get_config()
    kind = type(layer).__name__
    if kind == "Conv2D":
        return f"{'×'.join(map(str, config['kernel_size']))}, {config['filters']} filters, {config['padding']}"
    if kind == "Dense":
        activation = config["activation"]
        return f"{config['units']} units" + ("" if activation == "linear" else f", {activation}")
    if kind == "MaxPooling2D":
        return "×".join(map(str, config["pool_size"]))
    if kind == "Dropout":
        return f"rate {config['rate']:g}"
    if kind == "Activation":
        return str(config["activation"])
    return ""
