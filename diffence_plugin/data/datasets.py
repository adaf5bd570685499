"""Image datasets from local files (nothing is downloaded): CIFAR-10 (the JPEG npz copy or the official
``cifar-10-batches-py``), CIFAR-100 (``cifar-100-python``) and SVHN (``train_32x32.mat``/``test_32x32.mat``).

Every loader returns float32 (S, 3, 32, 32) images in [0, 1] and int64 labels. The official CIFAR python
files are pickles: they are read with an unpickler that admits only what numpy arrays need, so a tampered
file cannot run code.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ImageDataset:
    """A dataset's training split and, where it has one, its test split (None otherwise)."""

    x_train: np.ndarray  # (S, C, H, W) float32 in [0, 1]; (S, 3, 32, 32) for the folder datasets here
    y_train: np.ndarray  # (S,) int64
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    nb_classes: int


def _require(folder: Path, names: list[str], what: str) -> None:
    missing = [n for n in names if not (folder / n).is_file()]
    if len(missing) == len(names):
        raise FileNotFoundError(f"{what}: {str(folder)!r} holds none of its files ({', '.join(names)})")
    if missing:
        raise FileNotFoundError(f"{what}: {str(folder)!r} is missing {', '.join(missing)}")


def _to_float(images_nhwc: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def _decode_jpeg_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    with np.load(path, allow_pickle=False) as data:
        missing = {"jpeg", "offsets", "labels"} - set(data.files)
        if missing:
            raise ValueError(f"{str(path)!r} lacks arrays {sorted(missing)}")
        jpeg, offsets, labels = data["jpeg"], data["offsets"], data["labels"]
    if len(offsets) != len(labels) + 1 or offsets[-1] != len(jpeg):
        raise ValueError(f"{str(path)!r}: offsets do not match {len(labels)} images of {len(jpeg)} bytes")
    images = np.empty((len(labels), 32, 32, 3), dtype=np.uint8)
    for i in range(len(labels)):
        with Image.open(io.BytesIO(jpeg[offsets[i]:offsets[i + 1]].tobytes())) as img:
            images[i] = np.asarray(img.convert("RGB"))
    return images, labels.astype(np.int64)


def load_cifar10_npz(folder: str | Path, verify: bool = True) -> ImageDataset:
    """The JPEG copy of CIFAR-10 (``train.npz``, ``test.npz``).

    With ``verify`` and a ``manifest.json`` beside them, each file's sha256 and the sha256 of its decoded
    uint8 images are checked, so a damaged file or a decoder that differs is reported, not used.
    """
    folder = Path(folder)
    _require(folder, ["train.npz", "test.npz"], "CIFAR-10 (npz)")
    manifest = json.loads((folder / "manifest.json").read_text()).get("files", {}) \
        if verify and (folder / "manifest.json").is_file() else {}
    parts = []
    for name in ("train.npz", "test.npz"):
        entry = manifest.get(name, {})
        if "sha256" in entry and hashlib.sha256((folder / name).read_bytes()).hexdigest() != entry["sha256"]:
            raise ValueError(f"{str(folder / name)!r} does not match the sha256 in manifest.json")
        images, labels = _decode_jpeg_npz(folder / name)
        if "decoded_uint8_sha256" in entry and hashlib.sha256(images.tobytes()).hexdigest() != entry["decoded_uint8_sha256"]:
            raise ValueError(f"decoded images of {str(folder / name)!r} differ from manifest.json (another JPEG decoder?)")
        parts.append((images, labels))
    (xtr, ytr), (xte, yte) = parts
    return ImageDataset(_to_float(xtr), ytr, _to_float(xte), yte, 10)


class _ArrayUnpickler(pickle.Unpickler):
    """Admits only the globals a pickled dict of numpy arrays, lists and bytes needs."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")
        return super().find_class(module, name)


def _load_batch(path: Path) -> dict:
    with open(path, "rb") as fh:
        data = _ArrayUnpickler(fh, encoding="bytes").load()
    if not isinstance(data, dict):
        raise ValueError(f"{str(path)!r} is not a CIFAR batch (got {type(data).__name__})")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def _batch_images(batch: dict, path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    if "data" not in batch or label_key not in batch:
        raise ValueError(f"{str(path)!r} lacks 'data' or {label_key!r}")
    data = np.asarray(batch["data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{str(path)!r}: data must have shape (S, 3072), got {data.shape}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(batch[label_key], dtype=np.int64)


def load_cifar10_batches(folder: str | Path) -> ImageDataset:
    """The official ``cifar-10-batches-py`` folder (data_batch_1..5, test_batch)."""
    folder = Path(folder)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    _require(folder, names, "CIFAR-10 (python batches)")
    parts = [_batch_images(_load_batch(folder / n), folder / n, "labels") for n in names]
    xtr = np.concatenate([p[0] for p in parts[:5]])
    ytr = np.concatenate([p[1] for p in parts[:5]])
    return ImageDataset(_to_float(xtr), ytr, _to_float(parts[5][0]), parts[5][1], 10)


def load_cifar100(folder: str | Path) -> ImageDataset:
    """The official ``cifar-100-python`` folder (train, test), fine labels."""
    folder = Path(folder)
    _require(folder, ["train", "test"], "CIFAR-100")
    (xtr, ytr), (xte, yte) = (_batch_images(_load_batch(folder / n), folder / n, "fine_labels") for n in ("train", "test"))
    return ImageDataset(_to_float(xtr), ytr, _to_float(xte), yte, 100)


def load_svhn(folder: str | Path) -> ImageDataset:
    """SVHN's ``train_32x32.mat`` and ``test_32x32.mat`` (label 10 is the digit 0)."""
    from scipy.io import loadmat

    folder = Path(folder)
    _require(folder, ["train_32x32.mat", "test_32x32.mat"], "SVHN")
    out = []
    for name in ("train_32x32.mat", "test_32x32.mat"):
        mat = loadmat(folder / name)
        if "X" not in mat or "y" not in mat:
            raise ValueError(f"{str(folder / name)!r} lacks arrays 'X' and 'y'")
        images = np.asarray(mat["X"], dtype=np.uint8).transpose(3, 0, 1, 2)
        labels = np.asarray(mat["y"]).reshape(-1).astype(np.int64) % 10
        out.append((images, labels))
    return ImageDataset(_to_float(out[0][0]), out[0][1], _to_float(out[1][0]), out[1][1], 10)


LAYOUTS = {
    "cifar10": "either train.npz + test.npz (+ manifest.json), or the official cifar-10-batches-py files "
               "(data_batch_1 ... data_batch_5, test_batch)",
    "cifar100": "the official cifar-100-python files (train, test)",
    "svhn": "train_32x32.mat and test_32x32.mat",
}


def load_dataset(name: str, folder: str | Path) -> ImageDataset:
    """``cifar10`` (npz copy or python batches, detected), ``cifar100`` or ``svhn`` from ``folder``."""
    folder = Path(folder)
    if name in LAYOUTS and not folder.is_dir():
        raise FileNotFoundError(f"data folder {str(folder)!r} does not exist; {name} is read from a folder "
                                f"holding {LAYOUTS[name]}")
    if name in LAYOUTS and not any(folder.iterdir()):
        raise FileNotFoundError(f"data folder {str(folder)!r} is empty; {name} is read from a folder holding "
                                f"{LAYOUTS[name]}")
    if name == "cifar10":
        return load_cifar10_npz(folder) if (folder / "train.npz").exists() else load_cifar10_batches(folder)
    if name == "cifar100":
        return load_cifar100(folder)
    if name == "svhn":
        return load_svhn(folder)
    raise ValueError(f"unknown dataset {name!r}; choose from cifar10, cifar100, svhn")


def needs_folder(loader) -> bool:
    """Whether a registered dataset loader needs ``[data].folder``: its first parameter has no default."""
    import inspect

    params = list(inspect.signature(loader).parameters.values())
    return bool(params) and params[0].default is inspect.Parameter.empty


def open_dataset(loader, folder: str | Path | None) -> ImageDataset:
    """A registered loader's dataset: read from ``folder``, or without one when the loader needs none and
    none is given."""
    return loader(folder) if needs_folder(loader) or folder is not None else loader()


def layout_of(name: str, loader) -> str:
    """What the folder of dataset ``name`` must hold, for error messages: the built-in layouts, else the
    first line of the loader's docstring."""
    return LAYOUTS.get(name) or ((loader.__doc__ or "").strip().splitlines() or ["its files"])[0]


@dataclass(frozen=True)
class PaperSplit:
    """The paper's split of the training set: members train the target; the rest is the reference pool."""

    members: np.ndarray
    reference: np.ndarray


def paper_split(n_train: int, members: int = 25_000, seed: int = 0) -> PaperSplit:
    """25,000 members for CIFAR (5,000 for SVHN in the paper) drawn at random; the rest as reference."""
    if not 0 < members < n_train:
        raise ValueError(f"members must lie in (0, {n_train}), got {members}")
    order = np.random.default_rng(seed).permutation(n_train)
    return PaperSplit(members=np.sort(order[:members]), reference=np.sort(order[members:]))
