"""The no-animal classifier: a small Keras CNN trained from scratch on the photos.

It takes 128 x 128 RGB photos as uint8 (what the server decodes) and resizes them itself,
so the resolution it learns at is a parameter of the model, not of its callers. Beside the
convolutions' pooled features it reads the photo's HSV histograms (a layer of its own,
no weights): best validation ROC AUC 0.789 with them (50 epochs), 0.753 without (60), both
measured before duplicate photos were merged (0.738 with them since). Training
augments (flips, rotations, zoom, shifts, contrast), weighs the classes so that the few
animal photos count as much as the many others, and keeps the weights of the epoch with the
best validation ROC AUC. The test set is not seen here.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from mlsys.aianimals.photos import IMAGE_SIZE
from mlsys.common.keras_training import best_epoch_keeper, configure_tensorflow


@dataclass(frozen=True)
class CnnParams:
    resolution: int = 64  # the model's own input size, after resizing the 128 px photo
    width: int = 24  # filters of the first block; each block doubles them
    blocks: int = 3
    epochs: int = 50
    batch_size: int = 32
    learning_rate: float = 1e-3  # start of the cosine schedule
    weight_decay: float = 1e-4
    dropout: float = 0.3
    label_smoothing: float = 0.0
    seed: int = 0
    threads: int = 2  # TensorFlow's intra-op threads (the cores it may use)
    colour_histograms: bool = True  # the photo's HSV histograms beside the conv features


@dataclass
class Trained:
    model: object  # keras.Model
    history: list[dict] = field(default_factory=list)  # per epoch: loss, auc, val_auc, ...
    best_epoch: int = 0
    seconds: float = 0.0


@cache  # one class, registered once: loading a saved model needs it registered
def colour_histograms_layer():
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="mlsys")
    class ColourHistograms(keras.layers.Layer):
        """The share of the photo's pixels in each of 16 bins of hue, saturation and value:
        global colour statistics the convolutions see only through their small windows."""

        bins = 16

        def call(self, photos):
            hsv = tf.image.rgb_to_hsv(tf.cast(photos, "float32") / 255.0)
            binned = tf.cast(tf.minimum(hsv * self.bins, self.bins - 1), "int32")
            return tf.reshape(
                tf.reduce_mean(tf.one_hot(binned, self.bins), axis=[1, 2]), [-1, 3 * self.bins]
            )

        def compute_output_shape(self, input_shape):
            return (input_shape[0], 3 * self.bins)

    return ColourHistograms


def build_model(params: CnnParams):
    import keras
    from keras import layers

    ColourHistograms = colour_histograms_layer()
    # Out-of-frame pixels are white, as the photos' backgrounds are.
    white = {"fill_mode": "constant", "fill_value": 1.0}
    augment = keras.Sequential(
        [
            layers.RandomFlip("horizontal"),
            layers.RandomRotation(0.1, **white),
            layers.RandomZoom((-0.2, 0.2), **white),
            layers.RandomTranslation(0.1, 0.1, **white),
            layers.RandomContrast(0.2),
        ],
        name="augment",
    )
    photos = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), dtype="uint8", name="photos")
    # Area averaging: clipart's thin outlines vanish when a bilinear resize skips pixels.
    x = layers.Resizing(params.resolution, params.resolution, interpolation="area")(
        layers.Rescaling(1 / 255)(photos)
    )
    x = augment(x)
    for block in range(params.blocks):
        filters = params.width * 2**block
        shortcut = layers.Conv2D(filters, 1, use_bias=False)(x)
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("swish")(x)
        x = layers.MaxPooling2D()(layers.Add()([x, shortcut]))
    x = layers.GlobalAveragePooling2D()(x)
    if params.colour_histograms:
        x = layers.Concatenate()([x, ColourHistograms(name="colour_histograms")(photos)])
    x = layers.Dropout(params.dropout)(x)
    no_animal = layers.Dense(1, activation="sigmoid", name="no_animal")(x)
    return keras.Model(photos, no_animal, name="no_animal_classifier")


def train_cnn(
    images: np.ndarray,
    labels: np.ndarray,
    validation_images: np.ndarray,
    validation_labels: np.ndarray,
    params: CnnParams,
    progress: Callable[[int, dict], None] | None = None,
) -> Trained:
    configure_tensorflow(params.threads)
    import keras

    from mlsys.violation_detection.evaluate import roc_auc

    keras.utils.set_random_seed(params.seed)
    model = build_model(params)
    steps = math.ceil(len(labels) / params.batch_size) * params.epochs
    model.compile(
        optimizer=keras.optimizers.AdamW(
            keras.optimizers.schedules.CosineDecay(params.learning_rate, steps),
            weight_decay=params.weight_decay,
        ),
        loss=keras.losses.BinaryCrossentropy(label_smoothing=params.label_smoothing),
    )
    share = float(labels.mean())
    class_weight = {0: 0.5 / (1 - share), 1: 0.5 / share}
    keeper = best_epoch_keeper(
        "val_auc",
        lambda: roc_auc(validation_labels, cnn_scores(model, validation_images)),
        progress,
    )
    start = time.monotonic()
    model.fit(
        images,
        labels.astype(np.float32),
        epochs=params.epochs,
        batch_size=params.batch_size,
        class_weight=class_weight,
        callbacks=[keeper],
        verbose=0,
    )
    keeper.restore()
    return Trained(
        model=model,
        history=keeper.history,
        best_epoch=keeper.best_epoch,
        seconds=time.monotonic() - start,
    )


def cnn_scores(model, images: np.ndarray) -> np.ndarray:
    """The probability of "no animal" per photo (uint8, 128 x 128 x 3)."""
    return model.predict(images, batch_size=256, verbose=0).ravel()
