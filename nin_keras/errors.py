"""The library's exception types: every failure it reports on files or data is one of these."""


class NinKerasError(Exception):
    """Base class of every error nin-keras raises about files, data or weights."""


class CaffeFormatError(NinKerasError):
    """A file is not a readable Caffe ``.caffemodel`` (corrupt, truncated or another format)."""


class WeightsMismatchError(NinKerasError):
    """Weights do not fit an architecture; the message names the layer and the shapes."""


class DownloadError(NinKerasError):
    """A file could not be fetched (HTTP error, timeout, offline mode)."""


class HashMismatchError(DownloadError):
    """A downloaded or cached file's sha256 is not the one the registry expects."""


class PresetError(NinKerasError):
    """A preset folder is missing a file, or its config or metadata is malformed."""


class DataError(NinKerasError):
    """A data set could not be found or read (missing, empty, truncated or malformed files)."""


class ExportError(NinKerasError):
    """An export failed or its artifact did not pass the parity check, or an exported artifact
    (or its metadata) cannot be loaded or run."""


class CheckpointError(NinKerasError):
    """A checkpoint file is unreadable or does not fit the model and optimizer being trained."""


class TrainingError(NinKerasError):
    """A training run cannot give a usable result: its loss or weights became NaN or infinite
    (the message names the epoch, the step and the learning rate, and nothing was published)."""


class ImageError(DataError, ValueError):
    """An image file or buffer cannot become a model input (missing, not an allowed format,
    corrupt, too many pixels, or the wrong size in strict mode).

    A ``DataError`` (it is about a file's content) and a ``ValueError`` (it is bad input to
    ``Predictor`` and ``predict``), so callers catching either see it.
    """
