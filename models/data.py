"""Dataset loading for bnnforge: numpy in, numpy out, no network, no torch.

Three datasets are supported, all returned as a :class:`DatasetSplit` of two
:class:`Dataset` objects whose ``x`` is float32 in [0, 1], laid out NCHW, and
whose ``y`` is int64:

* ``digits``  - scikit-learn's bundled 8x8 digits (1,797 images, no download),
  ``x`` shape ``(N, 1, 8, 8)``; pixel values 0..16 are divided by 16.
  Deterministic stratified split (default 1,437 train / 360 test).
* ``mnist``   - any directory holding the four standard IDX files
  (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``; each raw or
  ``.gz``), ``x`` shape ``(N, 1, 28, 28)``, pixel values divided by 255.
  If only the two ``t10k`` files are present, the t10k split is itself split:
  the first 80% of images (8,000 of the standard 10,000) become the training
  set and the last 20% (2,000) the test set, and a ``UserWarning`` says so.
* ``cifar10`` - the standard "python version" batches directory
  (``data_batch_1`` .. ``data_batch_5``, ``test_batch``; pickled dicts with
  ``b'data'`` (N x 3072 uint8) and ``b'labels'``), ``x`` shape
  ``(N, 3, 32, 32)``, pixel values divided by 255.  A root containing a
  ``cifar-10-batches-py`` sub-directory is accepted too.  The pickles are read
  with a restricted unpickler that only admits numpy array reconstruction.

Every problem with the input raises :class:`models.errors.DataError` with a
one-line message naming the file and what is wrong.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bnnforge.models.errors import DataError

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "DatasetSplit",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "read_idx",
]

#: Names accepted by :func:`load_dataset`.
DATASETS = ("digits", "mnist", "cifar10")

IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dims
IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dim

#: Fraction of the t10k split used for training when only t10k files exist
#: (8,000 of the standard 10,000 images).
T10K_FALLBACK_TRAIN_FRACTION = 0.8

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"


def _one_line(text: object) -> str:
    """Collapse whitespace so an error message stays on a single line."""
    return " ".join(str(text).split())


def _fail(path: os.PathLike | str, what: str) -> DataError:
    return DataError(_one_line(f"{path}: {what}"))


# --------------------------------------------------------------------------
# containers
# --------------------------------------------------------------------------


@dataclass(eq=False)
class Dataset:
    """One split of a dataset.

    ``x``: float32 array, NCHW, values in [0, 1].  ``y``: int64 labels of
    shape ``(N,)`` with values in ``[0, num_classes)``.
    """

    x: np.ndarray
    y: np.ndarray
    name: str
    num_classes: int

    def __post_init__(self) -> None:
        if not isinstance(self.x, np.ndarray) or self.x.dtype != np.float32 or self.x.ndim != 4:
            raise DataError(
                _one_line(
                    f"dataset {self.name!r}: x must be a float32 NCHW array, got "
                    f"{type(self.x).__name__} {getattr(self.x, 'dtype', '')} "
                    f"shape {getattr(self.x, 'shape', '')}"
                )
            )
        if not isinstance(self.y, np.ndarray) or self.y.dtype != np.int64 or self.y.ndim != 1:
            raise DataError(
                _one_line(
                    f"dataset {self.name!r}: y must be a 1-D int64 array, got "
                    f"{type(self.y).__name__} {getattr(self.y, 'dtype', '')} "
                    f"shape {getattr(self.y, 'shape', '')}"
                )
            )
        if len(self.x) != len(self.y):
            raise DataError(
                f"dataset {self.name!r}: {len(self.x)} images but {len(self.y)} labels"
            )
        if int(self.num_classes) < 1:
            raise DataError(f"dataset {self.name!r}: num_classes must be >= 1, got {self.num_classes}")
        self.num_classes = int(self.num_classes)
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= self.num_classes):
            raise DataError(
                f"dataset {self.name!r}: labels must lie in [0, {self.num_classes}), "
                f"found {int(self.y.min())}..{int(self.y.max())}"
            )

    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(int(d) for d in self.x.shape[1:])  # type: ignore[return-value]

    def subset(self, indices) -> "Dataset":
        """A new Dataset holding the given indices (or slice) of this one."""
        idx = np.arange(len(self))[indices] if isinstance(indices, slice) else np.asarray(indices)
        return Dataset(
            x=np.ascontiguousarray(self.x[idx]),
            y=np.ascontiguousarray(self.y[idx]),
            name=self.name,
            num_classes=self.num_classes,
        )


@dataclass(eq=False)
class DatasetSplit:
    """A training and a test :class:`Dataset` of the same dataset."""

    train: Dataset
    test: Dataset

    def __post_init__(self) -> None:
        if self.train.input_shape != self.test.input_shape:
            raise DataError(
                f"dataset {self.train.name!r}: train images are {self.train.input_shape} "
                f"but test images are {self.test.input_shape}"
            )
        if self.train.num_classes != self.test.num_classes:
            raise DataError(
                f"dataset {self.train.name!r}: train has {self.train.num_classes} classes "
                f"but test has {self.test.num_classes}"
            )

    @property
    def name(self) -> str:
        return self.train.name

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.train.input_shape


# --------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------


def load_digits(seed: int = 0, test_fraction: float = 0.2) -> DatasetSplit:
    """scikit-learn's 8x8 digits, stratified split, deterministic per ``seed``.

    Pixel values 0..16 are mapped to [0, 1] by dividing by 16.  With the
    default ``test_fraction=0.2``: 1,437 training and 360 test images.
    """
    if not (0.0 < float(test_fraction) < 1.0):
        raise DataError(f"digits: test_fraction must be between 0 and 1, got {test_fraction}")
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = _sk_load_digits()
    x = (np.asarray(bunch.data, dtype=np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)
    y = np.asarray(bunch.target, dtype=np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=float(test_fraction), random_state=int(seed), stratify=y
    )
    idx_train = np.sort(idx_train)
    idx_test = np.sort(idx_test)
    mk = lambda i: Dataset(  # noqa: E731
        x=np.ascontiguousarray(x[i]), y=np.ascontiguousarray(y[i]), name="digits", num_classes=10
    )
    return DatasetSplit(train=mk(idx_train), test=mk(idx_test))


# --------------------------------------------------------------------------
# MNIST (IDX)
# --------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    """Read a file, transparently decompressing ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise _fail(path, "file not found") from None
    except IsADirectoryError:
        raise _fail(path, "is a directory, expected a file") from None
    except EOFError:
        raise _fail(path, "truncated gzip stream") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise _fail(path, f"not a valid gzip file ({e})") from None
    except OSError as e:
        raise _fail(path, f"cannot read file ({e.strerror or e})") from None


def read_idx(path: os.PathLike | str, expected_magic: int) -> np.ndarray:
    """Parse one IDX file (raw or ``.gz``) holding unsigned bytes.

    Checks the magic number against ``expected_magic`` (0x00000803 for
    images, 0x00000801 for labels), that the header is complete, and that the
    payload is exactly ``prod(dims)`` bytes.  Returns a uint8 array of shape
    ``dims``.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise _fail(path, f"truncated IDX header: file is only {len(raw)} bytes")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        kind = {IDX_IMAGES_MAGIC: "an image", IDX_LABELS_MAGIC: "a label"}.get(expected_magic, "this")
        raise _fail(
            path, f"wrong IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x} for {kind} file"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _fail(path, f"truncated IDX header: need {header} bytes for {ndim} dimensions, file has {len(raw)}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=np.int64))
    got = len(raw) - header
    if got < expected:
        raise _fail(path, f"truncated: dims {dims} need {expected} data bytes, file has {got}")
    if got > expected:
        raise _fail(path, f"{got - expected} unexpected trailing bytes after the {expected} data bytes of dims {dims}")
    return np.frombuffer(raw, dtype=np.uint8, count=expected, offset=header).reshape(dims)


def _find_idx(root: Path, base: str) -> Path | None:
    """``root/base`` if present, else ``root/base.gz``, else None."""
    for candidate in (root / base, root / (base + ".gz")):
        if candidate.exists():
            return candidate
    return None


def _mnist_pair(root: Path, images_base: str, labels_base: str) -> tuple[np.ndarray, np.ndarray]:
    img_path = _find_idx(root, images_base)
    lbl_path = _find_idx(root, labels_base)
    if img_path is None:
        raise _fail(root / images_base, "file not found (neither raw nor .gz)")
    if lbl_path is None:
        raise _fail(root / labels_base, "file not found (neither raw nor .gz)")
    images = read_idx(img_path, IDX_IMAGES_MAGIC)
    labels = read_idx(lbl_path, IDX_LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise _fail(img_path, f"MNIST images must be 28x28, found {images.shape[1]}x{images.shape[2]}")
    if images.shape[0] != labels.shape[0]:
        raise _fail(
            img_path, f"holds {images.shape[0]} images but {lbl_path.name} holds {labels.shape[0]} labels"
        )
    if images.shape[0] == 0:
        raise _fail(img_path, "holds no images")
    if labels.max() > 9:
        raise _fail(lbl_path, f"label {int(labels.max())} out of range 0..9")
    x = (images.astype(np.float32) / np.float32(255.0)).reshape(-1, 1, 28, 28)
    return x, labels.astype(np.int64)


def load_mnist(root: os.PathLike | str) -> DatasetSplit:
    """MNIST from a directory of IDX files (raw or ``.gz``).

    With all four standard files: the usual 60,000/10,000 split.  With only
    the two ``t10k`` files: first 80% of the t10k images for training, last
    20% for test (8,000/2,000 for the standard file), with a ``UserWarning``.
    """
    root = Path(root)
    if not root.is_dir():
        raise _fail(root, "MNIST directory not found" if not root.exists() else "is not a directory")
    have_train_img = _find_idx(root, MNIST_FILES["train_images"]) is not None
    have_train_lbl = _find_idx(root, MNIST_FILES["train_labels"]) is not None
    x_test, y_test = _mnist_pair(root, MNIST_FILES["test_images"], MNIST_FILES["test_labels"])
    if have_train_img or have_train_lbl:
        x_train, y_train = _mnist_pair(root, MNIST_FILES["train_images"], MNIST_FILES["train_labels"])
    else:
        n = len(y_test)
        n_train = int(round(n * T10K_FALLBACK_TRAIN_FRACTION))
        if n_train < 1 or n_train >= n:
            raise _fail(root, f"t10k-only fallback needs at least 2 images to split, found {n}")
        warnings.warn(
            f"{root}: no MNIST training files; splitting the t10k test set instead: "
            f"first {n_train} images for training, last {n - n_train} for test",
            UserWarning,
            stacklevel=2,
        )
        x_train, y_train = x_test[:n_train].copy(), y_test[:n_train].copy()
        x_test, y_test = x_test[n_train:].copy(), y_test[n_train:].copy()
    return DatasetSplit(
        train=Dataset(x=x_train, y=y_train, name="mnist", num_classes=10),
        test=Dataset(x=x_test, y=y_test, name="mnist", num_classes=10),
    )


# --------------------------------------------------------------------------
# CIFAR-10 (python pickled batches)
# --------------------------------------------------------------------------

# Globals a CIFAR batch pickle may legitimately reference (numpy arrays in
# Python 2 and 3 pickles).  Anything else is refused: pickle can run code.
_PICKLE_ALLOWED = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module.startswith("numpy.core."):  # Python-2 era / numpy<2 name
            module = "numpy._core." + module[len("numpy.core."):]
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def _load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _fail(path, "file not found") from None
    except IsADirectoryError:
        raise _fail(path, "is a directory, expected a pickled CIFAR-10 batch") from None
    except OSError as e:
        raise _fail(path, f"cannot read file ({e.strerror or e})") from None
    try:
        obj = _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # corrupt pickles raise a zoo of exception types
        raise _fail(path, f"corrupt or unsupported pickle ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise _fail(path, f"expected a pickled dict, found {type(obj).__name__}")

    def get(key: str):
        for k in (key.encode(), key):
            if k in obj:
                return obj[k]
        raise _fail(path, f"missing key b'{key}'")

    data = get("data")
    labels = get("labels")
    if not isinstance(data, np.ndarray):
        raise _fail(path, f"b'data' must be a numpy array, found {type(data).__name__}")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise _fail(path, f"b'data' must be uint8 of shape (N, 3072), found {data.dtype} {data.shape}")
    try:
        y = np.asarray(labels)
    except Exception as e:
        raise _fail(path, f"b'labels' is not a list of integers ({e})") from None
    if y.ndim != 1 or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise _fail(path, f"b'labels' must be a flat list of integers, found {y.dtype} shape {y.shape}")
    if len(y) != len(data):
        raise _fail(path, f"holds {len(data)} images but {len(y)} labels")
    if len(y) == 0:
        raise _fail(path, "holds no images")
    if y.min() < 0 or y.max() > 9:
        raise _fail(path, f"labels must lie in 0..9, found {int(y.min())}..{int(y.max())}")
    x = (data.astype(np.float32) / np.float32(255.0)).reshape(-1, 3, 32, 32)
    return x, y.astype(np.int64)


def load_cifar10(root: os.PathLike | str) -> DatasetSplit:
    """CIFAR-10 from the standard python batches directory.

    ``root`` holds ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``
    (or a ``cifar-10-batches-py`` sub-directory that does).
    """
    root = Path(root)
    if not root.is_dir():
        raise _fail(root, "CIFAR-10 directory not found" if not root.exists() else "is not a directory")
    if not (root / CIFAR10_TEST_BATCH).exists() and (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    parts = [_load_cifar_batch(root / name) for name in CIFAR10_TRAIN_BATCHES]
    x_test, y_test = _load_cifar_batch(root / CIFAR10_TEST_BATCH)
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    return DatasetSplit(
        train=Dataset(x=x_train, y=y_train, name="cifar10", num_classes=10),
        test=Dataset(x=x_test, y=y_test, name="cifar10", num_classes=10),
    )


# --------------------------------------------------------------------------
# dispatch
# --------------------------------------------------------------------------


def load_dataset(name: str, root: os.PathLike | str | None = None, **kw) -> DatasetSplit:
    """Load ``digits`` (``root`` unused; ``seed``, ``test_fraction`` accepted),
    ``mnist`` or ``cifar10`` (both need ``root``)."""
    key = str(name).strip().lower()
    if key == "digits":
        if root is not None:
            raise DataError(f"dataset 'digits' is bundled with scikit-learn and takes no root, got {root}")
        return load_digits(**kw)
    if key in ("mnist", "cifar10"):
        if root is None:
            raise DataError(f"dataset {key!r} needs a root directory holding its files")
        if kw:
            raise DataError(f"dataset {key!r} takes no options, got {', '.join(sorted(kw))}")
        return load_mnist(root) if key == "mnist" else load_cifar10(root)
    raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
