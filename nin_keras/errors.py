"""The library's exception types: every failure it reports on files or data is one of these.

A message that names an argument of a library call (the bad one, or the one that fixes the
problem) holds it as an :class:`Argument` part, spelled in Python by ``str(error)``
(``overwrite=True``) and as its flag by ``nin-keras`` (``--overwrite``), which finds the flag among
its parser's options; a :class:`Call` part names a library function the same way (``nin-keras``
spells it as the subcommand over that function).
"""

from __future__ import annotations

from typing import Any, Callable

_NO_VALUE = object()


class Argument:
    """An argument of a library call named in an error message: ``name``, or ``name=value``
    (the value that fixes the problem)."""

    def __init__(self, name: str, value: Any = _NO_VALUE):
        self.name, self.value = name, value

    @property
    def has_value(self) -> bool:
        return self.value is not _NO_VALUE

    def __str__(self) -> str:
        return self.name if not self.has_value else f"{self.name}={self.value!r}"


class Call:
    """A library function named in an error message (``function``: its public ``module:name``),
    with the arguments to call it with."""

    def __init__(self, function: str, **arguments: Any):
        self.function, self.arguments = function, arguments

    def __str__(self) -> str:
        arguments = ", ".join(str(Argument(name, value)) for name, value in self.arguments.items())
        return f"{self.function.replace(':', '.')}({arguments})"


class NamesArguments(Exception):
    """An error whose message is text, :class:`Argument` and :class:`Call` parts; ``str(error)``
    spells them in Python."""

    def __init__(self, *parts: Any):
        self.parts = parts
        super().__init__("".join(map(str, parts)))

    def spelled(self, spell: Callable[[Argument | Call], str]) -> str:
        """The message with each argument and call spelled by ``spell`` (the command line's flags)."""
        return "".join(spell(part) if isinstance(part, (Argument, Call)) else str(part) for part in self.parts)


class NinKerasError(NamesArguments):
    """Base class of every error nin-keras raises about files, data or weights."""


class ArgumentError(NamesArguments, ValueError):
    """A bad argument value; the message names the argument (an :class:`Argument` part)."""


class OutputExistsError(NamesArguments, FileExistsError):
    """An output exists and is not replaced; the message names the argument that replaces it."""


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
