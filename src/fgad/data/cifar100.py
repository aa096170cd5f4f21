"""CIFAR-100 from the official *binary* version; 20 coarse superclasses by default.

Folder layout (``<root>`` defaults to ``$FGAD_DATA_DIR/cifar100``)::

    <root>/
    ├── cifar-100-binary.tar.gz         (optional: extracted here on first use)
    └── cifar-100-binary/
        ├── train.bin
        ├── test.bin
        ├── coarse_label_names.txt      (optional, the official names are built in)
        └── fine_label_names.txt        (optional, the official names are built in)

``<root>`` may also be the ``cifar-100-binary`` folder itself. Each record is 1 coarse-label
byte, 1 fine-label byte, then 3072 pixel bytes (R, G, B planes of 32×32).

Options:
    labels: ``"coarse"`` (default) — the 20 official superclasses, the usual one-vs-all protocol;
        ``"fine"`` — the 100 fine classes.
"""

from __future__ import annotations

from .base import Adapter, ImageDataset, opt_choice
from .cifar10 import locate, read_names, read_records

COARSE_NAMES = [
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
]  # fmt: skip

FINE_NAMES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table",
    "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
]  # fmt: skip

SUBDIR = "cifar-100-binary"
ARCHIVE = "cifar-100-binary.tar.gz"


def load(root=None, *, download: bool = False, labels: str = "coarse") -> ImageDataset:
    labels = opt_choice(labels, "labels", ("coarse", "fine"))
    folder, extra = locate(
        "cifar100", root, subdir=SUBDIR, archive=ARCHIVE, required=["train.bin", "test.bin"], download=download
    )
    index, names = (0, COARSE_NAMES) if labels == "coarse" else (1, FINE_NAMES)
    x_train, y_train = read_records(folder / "train.bin", 2, index, len(names))
    x_test, y_test = read_records(folder / "test.bin", 2, index, len(names))
    return ImageDataset(
        name="cifar100",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=read_names(folder / f"{labels}_label_names.txt", names),
        info={"source": "CIFAR-100 binary version (Krizhevsky 2009)", "folder": str(folder), "labels": labels, **extra},
    )


ADAPTER = Adapter(
    load=load,
    options={"labels": "coarse"},
    downloadable=True,
    summary="CIFAR-100, 32×32 RGB, 20 coarse superclasses (labels='fine': 100 classes)",
)
