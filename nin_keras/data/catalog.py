"""What the library knows about each data set: shape, classes, splits and the paper's preprocessing."""

from __future__ import annotations

import dataclasses

import keras

from nin_keras.layers import GlobalContrastNormalization, LocalContrastNormalization, ZCAWhitening

_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                    "truck")
_CIFAR100_CLASSES = tuple("""
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup
dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower
leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid
otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray
road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar
sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle
wardrobe whale willow_tree wolf woman worm""".split())
_DIGITS = tuple(str(d) for d in range(10))
_FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                    "Sneaker", "Bag", "Ankle boot")

_CIFAR_PREPROCESSING = "GCN (scale=55, L2 norm), then ZCA whitening (filter_bias=0.1) fitted on train"
_CIFAR_AUGMENTATION = "random translation (zero-pad 4, random crop) and horizontal flip"


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one data set.

    Attributes:
        name: Library name (``cifar10``, ``cifar100``, ``svhn``, ``mnist``, ``fashion_mnist``).
        image_shape: ``(height, width, channels)`` of every image (uint8).
        class_names: Class names in label order; ``num_classes`` is their count.
        splits: Example counts per split name.
        tfds_name: The tensorflow-datasets builder name.
        preprocessing: The Maxout/NIN papers' preprocessing, in words.
        augmentation: The papers' training-time augmentation ("none" if none).
    """

    name: str
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    splits: dict[str, int]
    tfds_name: str
    preprocessing: str
    augmentation: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def preprocessing_layers(self) -> list[keras.layers.Layer]:
        """Fresh, unfitted layers for the paper's preprocessing (ZCA still needs ``adapt``)."""
        if self.name in ("cifar10", "cifar100"):
            return [GlobalContrastNormalization(scale=55.0), ZCAWhitening(filter_bias=0.1)]
        if self.name == "svhn":
            return [GlobalContrastNormalization(), LocalContrastNormalization(7, 2.0, 1e-4)]
        return [keras.layers.Rescaling(1.0 / 255)]


_INFOS = {
    info.name: info
    for info in (
        DatasetInfo("cifar10", (32, 32, 3), _CIFAR10_CLASSES, {"train": 50_000, "test": 10_000},
                    "cifar10", _CIFAR_PREPROCESSING, _CIFAR_AUGMENTATION),
        DatasetInfo("cifar100", (32, 32, 3), _CIFAR100_CLASSES, {"train": 50_000, "test": 10_000},
                    "cifar100", _CIFAR_PREPROCESSING, _CIFAR_AUGMENTATION),
        DatasetInfo("svhn", (32, 32, 3), _DIGITS,
                    {"train": 69_257, "valid": 6_000, "test": 26_032, "extra": 529_131},
                    "svhn_cropped",
                    "GCN (defaults), then LeCun LCN (7x7 Gaussian, sigma=2, threshold=1e-4)", "none"),
        DatasetInfo("mnist", (28, 28, 1), _DIGITS, {"train": 60_000, "test": 10_000}, "mnist",
                    "none (pixels scaled to [0, 1])", "none"),
        DatasetInfo("fashion_mnist", (28, 28, 1), _FASHION_CLASSES,
                    {"train": 60_000, "test": 10_000}, "fashion_mnist",
                    "none (pixels scaled to [0, 1])", "none"),
    )
}
DATASET_NAMES = tuple(_INFOS)


def dataset_info(name: str) -> DatasetInfo:
    """Facts about data set ``name``; raises ``ValueError`` listing the known names."""
    try:
        return _INFOS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}") from None
