"""What training a Keras model needs (here, in the member that declares TensorFlow):
TensorFlow's threads set before its first op (on a 2-core machine its default pools
oversubscribe the cores), the weights of the epoch that scored best on validation, and
what loading the logged model requires."""

from collections.abc import Callable


def configure_tensorflow(threads: int) -> None:
    """Bounded intra-op threads and one inter-op thread; a process whose TensorFlow is
    already initialized (tests) keeps its settings."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass


def best_epoch_keeper(
    metric: str,
    score: Callable[[], float],
    progress: Callable[[int, dict], None] | None = None,
):
    """A Keras callback that scores the model on validation after each epoch (`score`,
    higher is better), records `{**logs, metric: score}` in `.history`, keeps the best
    epoch's weights and puts them back (`.restore()`) once training ends."""
    import keras

    class BestEpoch(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.history: list[dict] = []
            self.best_epoch, self._best, self._weights = 0, float("-inf"), None

        def on_epoch_end(self, epoch, logs=None):
            record = {**(logs or {}), metric: score()}
            self.history.append(record)
            if record[metric] > self._best:
                self._best, self._weights = record[metric], self.model.get_weights()
                self.best_epoch = epoch
            if progress is not None:
                progress(epoch, record)

        def restore(self) -> None:
            self.model.set_weights(self._weights)

    return BestEpoch()


def keras_requirements() -> list[str]:
    """What loading a logged Keras model needs, named: MLflow's inference of it takes half
    a minute and then gives up on this workspace."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("tensorflow-cpu", "keras")]


SAVED_MODEL = "saved_model"  # the run's artifact: a model exported for serving


def log_saved_model(model) -> None:
    """Log the model to the active MLflow run as a TensorFlow SavedModel (artifact
    SAVED_MODEL, endpoint `serve`), which serving loads without Keras or our code.

    An explicit endpoint, not `model.export()`: that one traces the model without
    `training=False`, and augmentation layers (random unless told otherwise) then flip and
    zoom every photo served."""
    import tempfile
    from pathlib import Path

    import keras
    import tensorflow as tf

    import mlflow

    [spec] = model.inputs
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",
        fn=lambda inputs: model(inputs, training=False),
        input_signature=[tf.TensorSpec(spec.shape, spec.dtype)],
    )
    with tempfile.TemporaryDirectory() as tmp:
        archive.write_out(str(Path(tmp) / SAVED_MODEL), verbose=False)
        mlflow.log_artifacts(str(Path(tmp) / SAVED_MODEL), artifact_path=SAVED_MODEL)
