"""The image embedding of similar-image search: a small Keras CNN trained here from the
shipped photos (no weights downloaded) to tell the photos' subcategories apart (mammals,
birds, office, food, ...: the label animal / no animal follows from them); its
normalised penultimate layer is the embedding, so photos of one kind lie close.

It learns from the training part of the photos' fixed split (`mlsys.aianimals.photos`,
the classifier's split), keeps the epoch with the best validation accuracy, and is judged
on the test photos, which it never saw: each test photo's nearest test photos, and how
often they share its label and its subcategory, beside the chance of that.

Measured (seed 0, 1,093 / 234 / 234 photos, 76 subcategories, 2 cores): 30 epochs in 76 s,
precision@10 of the label 0.736 (chance 0.704), of the subcategory 0.103 (chance 0.029);
80 epochs (229 s): 0.736 and 0.116; a second head for animal / no animal beside the
subcategories (30 epochs): 0.738 and 0.086. The label is barely above chance, as the
no-animal classifier's test ROC AUC (0.69) says these photos are hard to tell apart.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mlsys.aianimals.photos import IMAGE_SIZE
from mlsys.search.keras_training import best_epoch_keeper, configure_tensorflow


@dataclass(frozen=True)
class EmbeddingParams:
    resolution: int = 64  # the model's own input size, after resizing the 128 px photo
    width: int = 16  # filters of the first block; each block doubles them
    blocks: int = 3
    dimension: int = 64  # the embedding's length
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 2e-3
    seed: int = 0
    threads: int = 2  # TensorFlow's intra-op threads


@dataclass
class TrainedEmbedding:
    model: object  # keras.Model: uint8 photos -> unit vectors
    classes: list[str]
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0


def build_models(params: EmbeddingParams, classes: int):
    """(classifier, embedder): the embedder's layers are the classifier's but its head."""
    import keras
    from keras import layers

    white = {"fill_mode": "constant", "fill_value": 1.0}  # the photos' backgrounds
    augment = keras.Sequential(
        [layers.RandomFlip("horizontal"), layers.RandomZoom((-0.15, 0.15), **white)],
        name="augment",
    )
    photos = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), dtype="uint8", name="photos")
    x = layers.Resizing(params.resolution, params.resolution, interpolation="area")(
        layers.Rescaling(1 / 255)(photos)
    )
    x = augment(x)
    for block in range(params.blocks):
        for _ in range(2):
            x = layers.Conv2D(params.width * 2**block, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    vector = layers.UnitNormalization(name="embedding")(layers.Dense(params.dimension)(x))
    scores = layers.Dense(classes, activation="softmax", name="subcategory")(
        layers.Dropout(0.2)(vector)
    )
    return keras.Model(photos, scores), keras.Model(photos, vector, name="image_embedding")


def train_embedding(
    images: np.ndarray,
    subcategories: list[str],
    validation_images: np.ndarray,
    validation_subcategories: list[str],
    params: EmbeddingParams,
    progress: Callable[[int, dict], None] | None = None,
) -> TrainedEmbedding:
    configure_tensorflow(params.threads)
    import keras

    keras.utils.set_random_seed(params.seed)
    classes = sorted(set(subcategories))
    number = {name: i for i, name in enumerate(classes)}
    targets = np.array([number[name] for name in subcategories])
    # A validation photo of a subcategory training lacks can only count as wrong.
    valid_targets = np.array([number.get(name, -1) for name in validation_subcategories])
    classifier, embedder = build_models(params, len(classes))
    steps = math.ceil(len(targets) / params.batch_size) * params.epochs
    classifier.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(params.learning_rate, steps)
        ),
        loss="sparse_categorical_crossentropy",
    )

    def accuracy() -> float:
        predicted = classifier.predict(validation_images, batch_size=256, verbose=0)
        return float((predicted.argmax(axis=1) == valid_targets).mean())

    keeper = best_epoch_keeper("val_accuracy", accuracy, progress)
    start = time.monotonic()
    classifier.fit(
        images,
        targets,
        epochs=params.epochs,
        batch_size=params.batch_size,
        callbacks=[keeper],
        verbose=0,
    )
    keeper.restore()
    return TrainedEmbedding(
        model=embedder,
        classes=classes,
        history=keeper.history,
        best_epoch=keeper.best_epoch,
        seconds=time.monotonic() - start,
    )


def embed(model, images: np.ndarray) -> np.ndarray:
    """Unit vectors, one per photo (uint8, 128 x 128 x 3)."""
    return model.predict(images, batch_size=256, verbose=0)


def neighbour_precision(vectors: np.ndarray, kinds: dict[str, np.ndarray]) -> dict[str, float]:
    """For each kind (label, subcategory): how often a photo's 10 nearest among these
    photos share its kind, over every photo (exact neighbours: a judgement of the
    embedding, not of the index)."""
    from mlsys.aianimals.image_index import exact_neighbours, precision_at

    near = exact_neighbours(vectors, min(10, len(vectors) - 1))
    return {name: precision_at(near, list(values)) for name, values in kinds.items()}
