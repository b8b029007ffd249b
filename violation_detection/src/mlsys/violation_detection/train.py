"""The no-animal classifier: a small Keras CNN trained from scratch on the photos, and
beside it, in the same model, a kernel machine on histograms of oriented gradients and a
logistic regression on Fisher vectors of dense SIFT descriptors.

It takes 128 x 128 RGB photos as uint8 (what the server decodes) and resizes them itself,
so the resolution it learns at is a parameter of the model, not of its callers.

The CNN's first layer is not learned by back-propagation: its filters are the centroids
of k-means over the training photos' 6 x 6 patches, each patch brightness- and
contrast-normalized and the patches whitened (Coates & Ng, 2011), the labels unused.
With 1,100 training photos, end-to-end first layers learned edges poorly: the same
network with a trained first layer reached validation ROC AUC 0.738 (64 px); these
filters alone under a logistic regression 0.798, and with the trained layers above them
0.81 (32 px, 30 epochs; both with the reviewed labels). Training augments (flips,
rotations, zoom, shifts), weighs the classes so that the few animal photos count as much
as the many others, and keeps the weights of the epoch with the best validation ROC AUC.

The drawings are outlines, which the CNN sees blurred at 32 px. Two classical encodings
of the 128 px photo scored better (5-fold cross-validation over training and validation,
the test set unseen): an RBF support vector machine on its oriented gradients, HSV
histograms and the k-means responses by quarter 0.860; a logistic regression on the
Fisher vectors of its dense SIFT descriptors, 128 Gaussians per patch size. For those,
CV (PCA and mixtures fitted on training and validation, labels unused) measured 0.889
with 16 and 32 px patches over the whole photo, 0.901 with 48 px patches added, 0.905
with each photo's quarters encoded too (a spatial pyramid), 0.911 with the mirrored
training photos learned from as well (64 px patches added: 0.913, not worth their cost;
C of 3 or 30 instead of 10: 0.910), and 0.927 with the photo first cropped to its
drawing (a small drawing on a wide page seen at the scale of a large one; with a 5%
white margin 0.921, zoom up to 8 times 0.925; Fisher vectors of local colour statistics
added nothing: 0.908 to 0.911). The parts' scores on validation are blended by a
logistic regression (stacking). PCA, mixtures, SVM and regressions are fitted by
scikit-learn on the features the model's own layers compute, and held by its layers,
so the Keras model and its SavedModel serve all three. The test set is not seen here.
"""

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from types import SimpleNamespace

import numpy as np

from mlsys.aianimals.photos import IMAGE_SIZE
from mlsys.common.keras_training import best_epoch_keeper, configure_tensorflow


@dataclass(frozen=True)
class CnnParams:
    resolution: int = 32  # the model's own input size, after resizing the 128 px photo
    patch_size: int = 6  # pixels per side of the first layer's filters
    patch_filters: int = 400  # k-means centroids: the first layer's filters
    width: int = 64  # filters of the first trained layer; the blocks above have twice
    blocks: int = 2
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3  # start of the cosine schedule
    weight_decay: float = 1e-4
    dropout: float = 0.5
    label_smoothing: float = 0.0
    seed: int = 0
    threads: int = 2  # TensorFlow's intra-op threads (the cores it may use)
    # The photo's HSV histograms beside the conv features: they helped the network of
    # end-to-end filters (0.789 vs 0.753); the kernel machine reads them anyway.
    colour_histograms: bool = False
    kernel_c: float = 3.0  # the kernel machine's C (its penalty of training errors)
    sift_cells: tuple[int, ...] = (4, 8, 12)  # the dense SIFT's cells: 16, 32 and 48 px patches
    fisher_components: int = 128  # the Gaussian mixture's components, per cell size
    fisher_dims: int = 64  # the descriptors' dims after PCA
    fisher_c: float = 10.0  # inverse penalty of the logistic regression on Fisher vectors


@dataclass
class Trained:
    model: object  # keras.Model
    history: list[dict] = field(default_factory=list)  # per epoch: loss, auc, val_auc, ...
    best_epoch: int = 0
    seconds: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)  # validation ROC AUC of each part
    support_vectors: int = 0


@cache  # registered once: loading a saved model needs its own layers registered
def model_layers():
    """The model's own layer classes, by name."""
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

    @keras.saving.register_keras_serializable(package="mlsys")
    class PatchFilters(keras.layers.Layer):
        """Each patch normalized (its mean taken away, divided by its deviation), then
        max(0, patch . filter - offset) per filter: the k-means encoding of Coates & Ng
        as a convolution. Kernel and offset are set from `learn_patch_filters`, never
        trained; the whitening is folded into the kernel."""

        def __init__(self, filters: int, patch_size: int, **kwargs):
            super().__init__(**kwargs)
            self.filters, self.patch_size = filters, patch_size

        def build(self, input_shape):
            size, channels = self.patch_size, input_shape[-1]
            self.kernel = self.add_weight(
                shape=(size, size, channels, self.filters), initializer="glorot_uniform",
                trainable=False, name="kernel",
            )  # fmt: skip
            self.offset = self.add_weight(
                shape=(self.filters,), initializer="zeros", trainable=False, name="offset"
            )
            self.mean_kernel = tf.ones((size, size, channels, 1)) / (size * size * channels)

        def call(self, x):
            mean = tf.nn.conv2d(x, self.mean_kernel, 1, "VALID")
            deviation = tf.sqrt(
                tf.nn.relu(tf.nn.conv2d(x * x, self.mean_kernel, 1, "VALID") - mean * mean)
                + PATCH_VARIANCE_FLOOR
            )
            response = tf.nn.conv2d(x, self.kernel, 1, "VALID")
            response -= mean * tf.reduce_sum(self.kernel, axis=[0, 1, 2])
            return tf.nn.relu(response / deviation - self.offset)

        def compute_output_shape(self, input_shape):
            side = input_shape[1] - self.patch_size + 1
            return (input_shape[0], side, side, self.filters)

        def get_config(self):
            return {**super().get_config(), "filters": self.filters,
                    "patch_size": self.patch_size}  # fmt: skip

    @keras.saving.register_keras_serializable(package="mlsys")
    class DrawingCrop(keras.layers.Layer):
        """A [0, 1] photo cropped to the square around its drawing (the pixels darker than
        white in some channel) and resized back to its own size: a small drawing on a wide
        white page is seen at the scale of a large one. The crop is at least a quarter of
        the photo's side (a dot is not blown up into a blur); what falls outside the photo
        is white, and a blank photo is left as it is."""

        ink, max_zoom = 0.95, 4.0

        def call(self, photos):
            size = photos.shape[1]
            inked = tf.reduce_min(photos, -1) < self.ink  # b, rows, columns
            place = tf.range(size, dtype="float32")

            def extent(marked):  # first and last marked row (or column); the whole if none
                first = tf.reduce_min(tf.where(marked, place, size), -1)
                last = tf.reduce_max(tf.where(marked, place, -1.0), -1)
                blank = ~tf.reduce_any(marked, -1)
                return tf.where(blank, 0.0, first), tf.where(blank, size - 1.0, last)

            top, bottom = extent(tf.reduce_any(inked, 2))
            left, right = extent(tf.reduce_any(inked, 1))
            half = tf.maximum(tf.maximum(bottom - top, right - left), size / self.max_zoom - 1) / 2
            row, column = (top + bottom) / 2, (left + right) / 2
            boxes = tf.stack([row - half, column - half, row + half, column + half], -1)
            return tf.image.crop_and_resize(
                photos, boxes / (size - 1), tf.range(tf.shape(photos)[0]), (size, size),
                extrapolation_value=1.0,
            )  # fmt: skip

        def compute_output_shape(self, input_shape):
            return input_shape

    @keras.saving.register_keras_serializable(package="mlsys")
    class SteepestGradients(keras.layers.Layer):
        """Per pixel of a [0, 1] photo, the central differences (dx, dy) of the colour
        channel where the gradient is steepest, and that gradient's magnitude: what both
        classical encodings read, computed once."""

        def call(self, x):
            pad = tf.zeros_like(x[:, :, :1])
            dx = tf.concat([pad, x[:, :, 2:] - x[:, :, :-2], pad], axis=2)
            pad = tf.zeros_like(x[:, :1])
            dy = tf.concat([pad, x[:, 2:] - x[:, :-2], pad], axis=1)
            magnitude = tf.sqrt(dx * dx + dy * dy)
            steepest = tf.one_hot(tf.argmax(magnitude, axis=-1), x.shape[-1])
            return tf.stack(
                [
                    tf.reduce_sum(dx * steepest, -1),
                    tf.reduce_sum(dy * steepest, -1),
                    tf.reduce_max(magnitude, -1),
                ],
                -1,
            )

        def compute_output_shape(self, input_shape):
            return (*input_shape[:-1], 3)

    @keras.saving.register_keras_serializable(package="mlsys")
    class OrientedGradients(keras.layers.Layer):
        """Histograms of oriented gradients (Dalal & Triggs) of a photo's steepest
        gradients (`SteepestGradients`): per pixel its unsigned orientation
        in 9 bins weighted by its magnitude, summed over 16 x 16 cells, each 2 x 2 block
        of cells normalized (L2-Hys). Outlines are what a drawing of an animal is made
        of; the convolutions above 32 px see them only blurred."""

        cell, bins, clip = 16, 9, 0.2

        def call(self, gradients):
            dx, dy, magnitude = tf.unstack(gradients, axis=-1)
            angle = tf.math.floormod(tf.atan2(dy, dx), math.pi)  # unsigned: [0, pi)
            binned = tf.minimum(tf.cast(angle * self.bins / math.pi, "int32"), self.bins - 1)
            votes = tf.one_hot(binned, self.bins) * magnitude[..., None]
            cells = tf.nn.avg_pool2d(votes, self.cell, self.cell, "VALID")
            blocks = tf.concat(
                [cells[:, :-1, :-1], cells[:, :-1, 1:], cells[:, 1:, :-1], cells[:, 1:, 1:]], -1
            )
            side = self._blocks(gradients.shape[1]) ** 2
            blocks = tf.reshape(blocks, [-1, side, 4 * self.bins])
            blocks = tf.math.l2_normalize(blocks, -1, epsilon=1e-10)
            blocks = tf.math.l2_normalize(tf.minimum(blocks, self.clip), -1, epsilon=1e-10)
            return tf.reshape(blocks, [-1, side * 4 * self.bins])

        def _blocks(self, side: int) -> int:
            return side // self.cell - 1

        def compute_output_shape(self, input_shape):
            return (input_shape[0], self._blocks(input_shape[1]) ** 2 * 4 * self.bins)

    @keras.saving.register_keras_serializable(package="mlsys")
    class QuadrantResponses(keras.layers.Layer):
        """The first layer's responses summed over each quarter of the photo, log-scaled:
        which filters fire, and roughly where (Coates & Ng's pooling)."""

        def call(self, responses):
            half = responses.shape[1] // 2
            quarters = [
                responses[:, rows, columns]
                for rows in (slice(None, half), slice(half, None))
                for columns in (slice(None, half), slice(half, None))
            ]
            return tf.math.log1p(tf.concat([tf.reduce_sum(q, [1, 2]) for q in quarters], -1))

        def compute_output_shape(self, input_shape):
            return (input_shape[0], 4 * input_shape[-1])

    @keras.saving.register_keras_serializable(package="mlsys")
    class KernelMachine(keras.layers.Layer):
        """A support vector machine's decision function, sum_i a_i exp(-gamma |z - s_i|^2)
        + b over the standardized features z: fitted by `fit_kernel_machine`, never
        trained by back-propagation."""

        def __init__(self, support: int, gamma: float, **kwargs):
            super().__init__(**kwargs)
            self.support, self.gamma = support, gamma

        def build(self, input_shape):
            features = input_shape[-1]

            def fixed(name, shape):
                return self.add_weight(shape=shape, initializer="zeros", trainable=False, name=name)

            self.mean, self.scale = fixed("mean", (features,)), fixed("scale", (features,))
            self.vectors = fixed("vectors", (self.support, features))
            self.coefficients = fixed("coefficients", (self.support,))
            self.intercept = fixed("intercept", ())

        def call(self, features):
            z = (features - self.mean) * self.scale
            distances = (
                tf.reduce_sum(z * z, -1, keepdims=True)
                - 2 * tf.matmul(z, self.vectors, transpose_b=True)
                + tf.reduce_sum(self.vectors * self.vectors, -1)
            )
            kernel = tf.exp(-self.gamma * tf.nn.relu(distances))
            return tf.linalg.matvec(kernel, self.coefficients)[:, None] + self.intercept

        def compute_output_shape(self, input_shape):
            return (input_shape[0], 1)

        def get_config(self):
            return {**super().get_config(), "support": self.support, "gamma": self.gamma}

    @keras.saving.register_keras_serializable(package="mlsys")
    class OrientationVotes(keras.layers.Layer):
        """Per pixel, the steepest gradient's magnitude (`SteepestGradients`) shared between
        the two nearest of 8 signed orientations: what SIFT's cells sum (computed once for
        every cell size)."""

        bins = 8

        def call(self, gradients):
            dx, dy, magnitude = tf.unstack(gradients, axis=-1)
            angle = tf.math.floormod(tf.atan2(dy, dx), 2 * math.pi) * self.bins / (2 * math.pi)
            low = tf.floor(angle)
            share = (angle - low)[..., None]
            low = tf.cast(low, "int32") % self.bins
            votes = (
                tf.one_hot(low, self.bins) * (1 - share)
                + tf.one_hot((low + 1) % self.bins, self.bins) * share
            )
            return votes * magnitude[..., None]

        def compute_output_shape(self, input_shape):
            return (*input_shape[:-1], self.bins)

    @keras.saving.register_keras_serializable(package="mlsys")
    class DenseSift(keras.layers.Layer):
        """SIFT descriptors (Lowe) of a photo's orientation votes on a dense grid, every
        4 pixels: the votes summed over a 4 x 4 grid of square cells of `cell` pixels,
        normalized, clipped at 0.2, normalized again and square-rooted (as RootSIFT, after
        an L2 norm rather than L1). A patch of the white background, whose gradients are
        all but none, gets the zero vector: no descriptor."""

        grid, stride, clip, blank = 4, 4, 0.2, 0.02

        def __init__(self, cell: int, **kwargs):
            super().__init__(**kwargs)
            self.cell = cell

        def call(self, votes):
            cells = tf.nn.avg_pool2d(votes, self.cell, self.stride, "VALID")
            step, side = self.cell // self.stride, self._side(votes.shape[1])
            descriptors = tf.concat(
                [
                    cells[:, i * step : i * step + side, j * step : j * step + side]
                    for i in range(self.grid)
                    for j in range(self.grid)
                ],
                -1,
            )
            descriptors = tf.reshape(descriptors, [-1, side * side, self.grid**2 * votes.shape[-1]])
            energy = tf.norm(descriptors, axis=-1, keepdims=True)
            unit = tf.minimum(descriptors / (energy + 1e-8), self.clip)
            unit = tf.sqrt(tf.math.l2_normalize(unit, -1, epsilon=1e-16))
            return unit * tf.cast(energy > self.blank, "float32")

        def _side(self, side: int) -> int:
            cells = (side - self.cell) // self.stride + 1
            return cells - (self.grid - 1) * (self.cell // self.stride)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], self._side(input_shape[1]) ** 2, self.grid**2 * input_shape[-1])

        def get_config(self):
            return {**super().get_config(), "cell": self.cell}

    @keras.saving.register_keras_serializable(package="mlsys")
    class FisherVectors(keras.layers.Layer):
        """The Fisher vectors of a photo's dense descriptors (Perronnin et al., 2010; Sanchez
        et al., 2013) over the whole photo and over each of its quarters (a spatial pyramid,
        Lazebnik et al., 2006): each descriptor projected by PCA and given its place on the
        grid, its posteriors under a diagonal Gaussian mixture, and per component and region
        the posterior-weighted mean deviation and variance deviation of the descriptors,
        each region's vector power- and L2-normalized. Blank patches do not count. PCA and
        mixture are fitted by `fit_fisher_vectors`, never trained by back-propagation."""

        regions = 5  # the whole photo, then its quarters row by row

        def __init__(self, components: int, dims: int, **kwargs):
            super().__init__(**kwargs)
            self.components, self.dims = components, dims

        def build(self, input_shape):
            def fixed(name, shape):
                return self.add_weight(shape=shape, initializer="zeros", trainable=False, name=name)

            placed = (self.components, self.dims + 2)  # the PCA's dims and the (row, column)
            self.pca_mean = fixed("pca_mean", (input_shape[-1],))
            self.projection = fixed("projection", (input_shape[-1], self.dims))
            self.means, self.precisions = fixed("means", placed), fixed("precisions", placed)
            self.mixture_weights = fixed("mixture_weights", (self.components,))

        def call(self, descriptors):
            places = descriptors.shape[1]
            counted = tf.cast(tf.reduce_max(descriptors, -1) > 0, "float32")[..., None]  # not blank
            z = tf.einsum("bpd,de->bpe", descriptors - self.pca_mean, self.projection)
            z = tf.concat([z, tf.broadcast_to(grid_places(places), [
                tf.shape(z)[0], places, 2])], -1)  # fmt: skip
            means, precisions, weights = self.means, self.precisions, self.mixture_weights
            squared, moments = precisions * precisions, tf.concat([z, z * z], -1)
            # One product for the Gaussians' exponents, one per quarter for the statistics:
            # the model's costliest steps (per photo, descriptors x components x 2 dims).
            exponents = tf.concat([means * squared, -0.5 * squared], -1)
            log_likelihood = (
                tf.math.log(weights) + tf.reduce_sum(tf.math.log(precisions), -1)
                - 0.5 * tf.reduce_sum(means * means * squared, -1)
                + tf.einsum("bpf,kf->bpk", moments, exponents)
            )  # fmt: skip
            posteriors = tf.nn.softmax(log_likelihood, -1) * counted
            side = round(math.sqrt(places))
            half = side // 2
            grids = [tf.reshape(x, [-1, side, side, x.shape[-1]])
                     for x in (counted, posteriors, moments)]  # fmt: skip
            quarters = []
            for rows in (slice(None, half), slice(half, None)):
                for columns in (slice(None, half), slice(half, None)):
                    count, weighted, moment = (g[:, rows, columns] for g in grids)
                    quarters.append(
                        (
                            tf.reduce_sum(count, [1, 2])[..., None],  # b, 1, 1
                            tf.reduce_sum(weighted, [1, 2])[..., None],  # b, k, 1
                            tf.einsum("bijk,bijf->bkf", weighted, moment),  # b, k, 2 dims
                        )
                    )
            whole = [tf.add_n(list(statistic)) for statistic in zip(*quarters, strict=True)]
            vector = tf.concat([self._normalized(*s) for s in [whole, *quarters]], -1)
            return tf.math.l2_normalize(vector, -1, epsilon=1e-24)

        def _normalized(self, count, zeroth, statistics):
            """One region's Fisher vector from its descriptors' count and posterior sums."""
            means, precisions, weights = self.means, self.precisions, self.mixture_weights
            first, second = tf.split(statistics, 2, -1)
            count = count + 1e-6
            mean_deviation = (
                (first - means * zeroth) * precisions / (count * tf.sqrt(weights)[:, None])
            )
            variance_deviation = (
                (second - 2 * means * first + means * means * zeroth) * precisions * precisions
                - zeroth
            ) / (count * tf.sqrt(2 * weights)[:, None])
            size = self.components * (self.dims + 2)
            vector = tf.concat(
                [
                    tf.reshape(mean_deviation, [-1, size]),
                    tf.reshape(variance_deviation, [-1, size]),
                ],
                -1,
            )
            vector = tf.sign(vector) * tf.sqrt(tf.abs(vector))
            return tf.math.l2_normalize(vector, -1, epsilon=1e-24)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], self.regions * 2 * self.components * (self.dims + 2))

        def get_config(self):
            return {**super().get_config(), "components": self.components, "dims": self.dims}

    return SimpleNamespace(
        ColourHistograms=ColourHistograms,
        DrawingCrop=DrawingCrop,
        PatchFilters=PatchFilters,
        SteepestGradients=SteepestGradients,
        OrientedGradients=OrientedGradients,
        QuadrantResponses=QuadrantResponses,
        KernelMachine=KernelMachine,
        OrientationVotes=OrientationVotes,
        DenseSift=DenseSift,
        FisherVectors=FisherVectors,
    )


def grid_places(count: int) -> np.ndarray:
    """(row, column) in [-0.5, 0.5] of each of `count` descriptors on a square grid, row by
    row: where on the photo a descriptor lies, as the Fisher vectors' mixture sees it."""
    side = round(math.sqrt(count))
    rows, columns = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    return (np.stack([rows.ravel(), columns.ravel()], -1) / max(side - 1, 1) - 0.5).astype(
        np.float32
    )


PATCH_VARIANCE_FLOOR = 0.01  # flat patches (white background) are not blown up into noise
WHITENING_FLOOR = 0.1  # added to the patch covariance's eigenvalues before whitening
PATCH_SAMPLE = 100_000  # patches k-means learns from


def shrunk(images: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 photos as the model's first layer sees them: [0, 1], area-resized."""
    import tensorflow as tf

    scaled = tf.image.resize(images.astype(np.float32) / 255, (resolution, resolution), "area")
    return scaled.numpy()


def learn_patch_filters(images: np.ndarray, params: CnnParams) -> tuple[np.ndarray, np.ndarray]:
    """The first layer's kernel (size x size x 3 x filters) and offset, from the photos
    alone: spherical k-means over whitened, normalized patches. The offset is each filter's
    response to the average patch plus the median response, so that about half the
    responses are zero (the soft threshold of Coates & Ng)."""
    from sklearn.cluster import MiniBatchKMeans

    x = shrunk(images, params.resolution)
    rng = np.random.default_rng(params.seed)
    size, side = params.patch_size, params.resolution - params.patch_size + 1
    chosen = rng.integers(0, [len(x), side, side], size=(PATCH_SAMPLE, 3))
    patches = np.stack([x[n, i : i + size, j : j + size] for n, i, j in chosen])
    patches = patches.reshape(len(patches), -1)
    patches -= patches.mean(axis=1, keepdims=True)
    patches /= np.sqrt(patches.var(axis=1, keepdims=True) + PATCH_VARIANCE_FLOOR)
    mean = patches.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(patches - mean, rowvar=False))
    whitening = eigenvectors @ np.diag(1 / np.sqrt(eigenvalues + WHITENING_FLOOR)) @ eigenvectors.T
    whitened = (patches - mean) @ whitening
    unit = whitened / np.linalg.norm(whitened, axis=1, keepdims=True)
    kmeans = MiniBatchKMeans(
        params.patch_filters, random_state=params.seed, batch_size=4096, n_init=1, max_iter=50
    )
    centroids = kmeans.fit(unit).cluster_centers_
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    kernel = whitening @ centroids.T  # whitening is symmetric: x W . c = x . (W c)
    offset = mean @ kernel + np.median(whitened @ centroids.T)
    shape = (size, size, images.shape[-1], params.patch_filters)
    return kernel.reshape(shape).astype(np.float32), offset.astype(np.float32)


def build_model(params: CnnParams, patch_filters: tuple[np.ndarray, np.ndarray] | None = None):
    """The classifier; `patch_filters` (kernel, offset) from `learn_patch_filters`
    (without them the first layer's filters are random: an untrained model)."""
    import keras
    from keras import layers

    own = model_layers()
    # Out-of-frame pixels are white, as the photos' backgrounds are.
    white = {"fill_mode": "constant", "fill_value": 1.0}
    augment = keras.Sequential(
        [
            layers.RandomFlip("horizontal"),
            layers.RandomRotation(0.05, **white),
            layers.RandomZoom((-0.15, 0.15), **white),
            layers.RandomTranslation(0.08, 0.08, **white),
        ],
        name="augment",
    )
    photos = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), dtype="uint8", name="photos")
    # Area averaging: clipart's thin outlines vanish when a bilinear resize skips pixels.
    x = layers.Resizing(params.resolution, params.resolution, interpolation="area")(
        layers.Rescaling(1 / 255, name="scaled")(photos)
    )
    first = own.PatchFilters(params.patch_filters, params.patch_size, name="patch_filters")
    x = layers.BatchNormalization()(first(augment(x)))
    x = layers.Conv2D(params.width, 1, activation="relu")(x)
    for _ in range(params.blocks):
        x = layers.MaxPooling2D()(x)
        x = layers.Conv2D(2 * params.width, 3, padding="same", use_bias=False)(x)
        x = layers.Activation("relu")(layers.BatchNormalization()(x))
    x = layers.GlobalAveragePooling2D()(x)
    if params.colour_histograms:
        x = layers.Concatenate()([x, own.ColourHistograms(name="colour_histograms")(photos)])
    x = layers.Dropout(params.dropout)(x)
    no_animal = layers.Dense(
        1, activation="sigmoid", kernel_regularizer=keras.regularizers.l2(1e-3), name="no_animal"
    )(x)
    model = keras.Model(photos, no_animal, name="no_animal_classifier")
    if patch_filters is not None:
        first.set_weights(list(patch_filters))
    return model


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    validation_images: np.ndarray,
    validation_labels: np.ndarray,
    params: CnnParams,
    progress: Callable[[int, dict], None] | None = None,
) -> Trained:
    """The CNN trained (its best epoch on validation kept), the kernel machine and the
    regression on Fisher vectors fitted on the training photos, and the three joined
    (`joined_model`), their blend learned from their scores on validation
    (`stacked_blend`)."""
    configure_tensorflow(params.threads)
    import keras

    from mlsys.violation_detection.evaluate import roc_auc

    keras.utils.set_random_seed(params.seed)
    model = build_model(params, learn_patch_filters(images, params))
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
        lambda: roc_auc(validation_labels, no_animal_scores(model, validation_images)),
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
    features = keras.Model(model.input, kernel_features(model, photo_gradients(model))).predict(
        images, batch_size=256, verbose=0
    )
    machine = fit_kernel_machine(features, labels, params)
    fisher = fit_fisher_vectors(model, images, labels, params)
    classifier = joined_model(model, machine, fisher)
    scores = keras.Model(classifier.input, classifier.get_layer("scores").output)
    validation_scores = scores.predict(validation_images, batch_size=64, verbose=0)
    classifier.get_layer("blend").set_weights(stacked_blend(validation_scores, validation_labels))
    parts = {
        name: roc_auc(validation_labels, validation_scores[:, column])
        for column, name in enumerate(PARTS)
    }
    return Trained(
        model=classifier,
        history=keeper.history,
        best_epoch=keeper.best_epoch,
        seconds=time.monotonic() - start,
        parts=parts,
        support_vectors=len(machine["weights"][2]),
    )


PARTS = ("cnn", "kernel_machine", "fisher_vectors")  # the joined model's scores, in order


def photo_gradients(cnn):
    """The steepest gradients of the CNN's photo at 128 px, as a tensor of its graph: what
    `kernel_features` reads."""
    return model_layers().SteepestGradients(name="gradients")(cnn.get_layer("scaled").output)


def drawing_gradients(cnn):
    """The steepest gradients of the CNN's photo cropped to its drawing (`DrawingCrop`):
    what `fisher_features` reads (CV of the Fisher vectors: 0.911 uncropped, 0.927)."""
    own = model_layers()
    drawing = own.DrawingCrop(name="drawing")(cnn.get_layer("scaled").output)
    return own.SteepestGradients(name="drawing_gradients")(drawing)


def kernel_features(cnn, gradients):
    """The kernel machine's features of a photo, as a tensor of the CNN's graph: the
    photo's oriented gradients at 128 px, its HSV histograms and the first layer's
    responses by quarter (at inference the augmentation below them does nothing)."""
    from keras import layers

    own = model_layers()
    return layers.Concatenate(name="kernel_features")(
        [
            own.OrientedGradients(name="oriented_gradients")(gradients),
            own.ColourHistograms(name="hsv_histograms")(cnn.input),
            own.QuadrantResponses(name="quadrants")(cnn.get_layer("patch_filters").output),
        ]
    )


def fit_kernel_machine(features: np.ndarray, labels: np.ndarray, params: CnnParams) -> dict:
    """An RBF support vector machine on the standardized features (classes balanced as
    the CNN's); its weights as the KernelMachine layer holds them."""
    from sklearn.svm import SVC

    mean, deviation = features.mean(axis=0), features.std(axis=0)
    scale = np.where(deviation > 1e-6, 1 / np.maximum(deviation, 1e-6), 0.0)
    gamma = 1 / features.shape[1]  # scikit-learn's "scale" for standardized features
    machine = SVC(C=params.kernel_c, gamma=gamma, class_weight="balanced")
    machine.fit((features - mean) * scale, labels)
    return {
        "gamma": gamma,
        "weights": [
            mean.astype(np.float32),
            scale.astype(np.float32),
            machine.support_vectors_.astype(np.float32),
            machine.dual_coef_[0].astype(np.float32),
            np.float32(machine.intercept_[0]),
        ],
    }


FISHER_SAMPLE = 100_000  # descriptors the PCA learns from; the mixture, from the first 60%


def fit_fisher_vectors(cnn, images: np.ndarray, labels: np.ndarray, params: CnnParams) -> dict:
    """Per cell size, the PCA and the Gaussian mixture of the training photos' dense SIFT
    descriptors (labels unused), and over their Fisher vectors a logistic regression
    (classes balanced): what `fisher_features` and the joined model's "fisher_logit" hold."""
    import keras
    from sklearn.decomposition import PCA
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(params.seed)
    votes = model_layers().OrientationVotes()(drawing_gradients(cnn))
    vectors = []
    for cell in params.sift_cells:
        sift = keras.Model(cnn.input, model_layers().DenseSift(cell)(votes))
        descriptors = sift.predict(images, batch_size=64, verbose=0)
        chosen = rng.integers(0, descriptors.shape[:2], size=(2 * FISHER_SAMPLE, 2))
        chosen = chosen[descriptors[chosen[:, 0], chosen[:, 1]].max(axis=1) > 0][:FISHER_SAMPLE]
        sample = descriptors[chosen[:, 0], chosen[:, 1]]
        del descriptors
        pca = PCA(params.fisher_dims, random_state=params.seed).fit(sample)
        mixed = chosen[: int(0.6 * len(chosen))]
        placed = np.concatenate(
            [pca.transform(sample[: len(mixed)]), grid_places(sift.output.shape[1])[mixed[:, 1]]],
            axis=1,
        )
        mixture = GaussianMixture(
            params.fisher_components, covariance_type="diag", reg_covar=1e-4, max_iter=50,
            random_state=params.seed,
        )  # fmt: skip
        with warnings.catch_warnings():
            # 50 EM steps place the components well enough for an encoding (the CV figures
            # above); waiting for the likelihood to settle costs minutes, not accuracy.
            warnings.simplefilter("ignore", ConvergenceWarning)
            mixture.fit(placed)
        weights = [pca.mean_, pca.components_.T, mixture.means_,
                   1 / np.sqrt(mixture.covariances_), mixture.weights_]  # fmt: skip
        vectors.append({"cell": cell, "weights": [w.astype(np.float32) for w in weights]})
    encode = keras.Model(cnn.input, fisher_features(drawing_gradients(cnn), vectors))
    # The mirrored photos too: a mirrored animal is an animal (CV: +0.006 ROC AUC).
    features = np.concatenate(
        [encode.predict(x, batch_size=64, verbose=0) for x in (images, images[:, :, ::-1])]
    )
    regression = LogisticRegression(C=params.fisher_c, class_weight="balanced", max_iter=2000)
    regression.fit(features, np.concatenate([labels, labels]))
    return {
        "vectors": vectors,
        "classifier": [regression.coef_.T.astype(np.float32),
                       regression.intercept_.astype(np.float32)],
    }  # fmt: skip


def fisher_features(gradients, vectors: list[dict]):
    """The photo's Fisher vectors, one per cell size, from the steepest gradients of its
    drawing (`drawing_gradients`); the fitted PCA and mixture are set."""
    from keras import layers

    own, parts = model_layers(), []
    votes = own.OrientationVotes(name="orientation_votes")(gradients)
    for vector in vectors:
        components, placed = vector["weights"][2].shape
        fisher = own.FisherVectors(components, placed - 2, name=f"fisher_{vector['cell']}")
        parts.append(fisher(own.DenseSift(vector["cell"], name=f"sift_{vector['cell']}")(votes)))
        fisher.set_weights(vector["weights"])
    return layers.Concatenate(name="fisher_vectors")(parts)


def joined_model(cnn, machine: dict, fisher: dict, spreads=(1.0, 1.0, 1.0)):
    """The classifier served: the CNN, the kernel machine and the logistic regression on
    Fisher vectors in one model, blended by a dense layer over the CNN's logit, the
    machine's decision and the regression's logit: their mean, each divided by its
    `spreads`, until `stacked_blend` sets its weights."""
    import keras
    from keras import layers

    head = cnn.get_layer("no_animal")
    cnn_logit = layers.Dense(1, name="cnn_logit")
    logit = cnn_logit(head.input)
    kernel = model_layers().KernelMachine(
        len(machine["weights"][2]), machine["gamma"], name="kernel_machine"
    )
    decision = kernel(kernel_features(cnn, photo_gradients(cnn)))
    fisher_logit = layers.Dense(1, name="fisher_logit")
    regression = fisher_logit(fisher_features(drawing_gradients(cnn), fisher["vectors"]))
    blend = layers.Dense(1, activation="sigmoid", name="blend")
    no_animal = blend(layers.Concatenate(name="scores")([logit, decision, regression]))
    model = keras.Model(cnn.input, no_animal, name="no_animal_classifier")
    cnn_logit.set_weights(head.get_weights())
    kernel.set_weights(machine["weights"])
    fisher_logit.set_weights(fisher["classifier"])
    blend.set_weights(_blend_weights(spreads))
    return model


def stacked_blend(scores: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
    """The blend layer's kernel and bias: a logistic regression (classes balanced) on the
    parts' scores of the validation photos, which the parts never learned from (stacking,
    Wolpert 1992). How much each part counts is then what it adds, not a fixed share: the
    mean of the three over their spreads scored 0.924 on validation where the Fisher
    vectors alone scored 0.939, and this stack 0.934 in 10-fold CV within validation."""
    from sklearn.linear_model import LogisticRegression

    # A part that gives every photo the same score (an untrained CNN) is not divided by 0.
    spreads = np.maximum(scores.std(axis=0), 1e-6)
    stack = LogisticRegression(C=1.0, class_weight="balanced").fit(scores / spreads, labels)
    kernel = (stack.coef_[0] / spreads)[:, None]
    return [kernel.astype(np.float32), stack.intercept_.astype(np.float32)]


def _blend_weights(spreads) -> list[np.ndarray]:
    """The blend layer's kernel and bias: the mean of the scores, each over its spread."""
    kernel = [[1 / (len(spreads) * spread)] for spread in spreads]
    return [np.array(kernel, np.float32), np.zeros(1, np.float32)]


def no_animal_scores(model, images: np.ndarray) -> np.ndarray:
    """The probability of "no animal" per photo (uint8, 128 x 128 x 3)."""
    return model.predict(images, batch_size=256, verbose=0).ravel()
