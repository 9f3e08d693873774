"""Dataset loaders: real formats written to tmp_path, every error path."""

from __future__ import annotations

import gzip
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

from bnnforge.models.data import (
    DATASETS,
    Dataset,
    DatasetSplit,
    load_cifar10,
    load_dataset,
    load_digits,
    load_mnist,
    read_idx,
)
from bnnforge.models.errors import BnnforgeError, DataError

REPO_ROOT = Path(__file__).resolve().parents[2]
MNIST_T10K = REPO_ROOT / ".." / "shared" / "datasets" / "mnist-t10k"

IMG_MAGIC = 0x00000803
LBL_MAGIC = 0x00000801


# ---------------------------------------------------------------- helpers


def idx_bytes(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    head = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return head + payload


def write(path: Path, blob: bytes, gz: bool) -> Path:
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(blob))
    else:
        path.write_bytes(blob)
    return path


def make_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def make_labels(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed + 100).integers(0, 10, size=n, dtype=np.uint8)


def write_pair(root: Path, prefix: str, n: int, seed: int, gz: bool):
    imgs, lbls = make_images(n, seed), make_labels(n, seed)
    write(root / f"{prefix}-images-idx3-ubyte", idx_bytes(IMG_MAGIC, (n, 28, 28), imgs.tobytes()), gz)
    write(root / f"{prefix}-labels-idx1-ubyte", idx_bytes(LBL_MAGIC, (n,), lbls.tobytes()), gz)
    return imgs, lbls


def assert_one_line_error(excinfo, *fragments):
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


# ---------------------------------------------------------------- errors module


def test_error_hierarchy():
    assert issubclass(DataError, BnnforgeError)
    assert issubclass(DataError, ValueError)
    assert issubclass(BnnforgeError, Exception)


# ---------------------------------------------------------------- MNIST / IDX


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_four_files(tmp_path, gz):
    tr_i, tr_l = write_pair(tmp_path, "train", 12, 1, gz)
    te_i, te_l = write_pair(tmp_path, "t10k", 5, 2, gz)
    split = load_mnist(tmp_path)
    assert isinstance(split, DatasetSplit)
    assert split.train.x.shape == (12, 1, 28, 28) and split.test.x.shape == (5, 1, 28, 28)
    assert split.train.x.dtype == np.float32 and split.train.y.dtype == np.int64
    np.testing.assert_array_equal(np.rint(split.train.x[:, 0] * 255).astype(np.uint8), tr_i)
    np.testing.assert_array_equal(np.rint(split.test.x[:, 0] * 255).astype(np.uint8), te_i)
    np.testing.assert_array_equal(split.train.y, tr_l.astype(np.int64))
    np.testing.assert_array_equal(split.test.y, te_l.astype(np.int64))
    assert split.train.x.min() >= 0.0 and split.train.x.max() <= 1.0
    assert split.name == "mnist" and split.num_classes == 10 and split.input_shape == (1, 28, 28)


def test_mnist_mixed_raw_and_gz(tmp_path):
    tr_i, _ = write_pair(tmp_path, "train", 4, 3, gz=True)
    write_pair(tmp_path, "t10k", 3, 4, gz=False)
    split = load_mnist(tmp_path)
    np.testing.assert_array_equal(np.rint(split.train.x[:, 0] * 255).astype(np.uint8), tr_i)
    assert len(split.test) == 3


def test_t10k_only_fallback_splits_80_20_with_warning(tmp_path):
    imgs, lbls = write_pair(tmp_path, "t10k", 10, 5, gz=True)
    with pytest.warns(UserWarning, match="first 8 images for training, last 2 for test"):
        split = load_mnist(tmp_path)
    assert len(split.train) == 8 and len(split.test) == 2
    np.testing.assert_array_equal(np.rint(split.train.x[:, 0] * 255).astype(np.uint8), imgs[:8])
    np.testing.assert_array_equal(np.rint(split.test.x[:, 0] * 255).astype(np.uint8), imgs[8:])
    np.testing.assert_array_equal(split.train.y, lbls[:8])
    np.testing.assert_array_equal(split.test.y, lbls[8:])


def test_no_warning_with_full_set(tmp_path):
    write_pair(tmp_path, "train", 4, 1, gz=False)
    write_pair(tmp_path, "t10k", 4, 2, gz=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_mnist(tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_wrong_magic_images(tmp_path, gz):
    write_pair(tmp_path, "t10k", 3, 1, gz=False)
    bad = write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(LBL_MAGIC, (3 * 784,), bytes(3 * 784)), gz)
    if gz:
        os.remove(tmp_path / "t10k-images-idx3-ubyte")
    with pytest.raises(DataError) as ei:
        load_mnist(tmp_path)
    assert_one_line_error(ei, str(bad), "magic", "0x00000801", "0x00000803")


def test_wrong_magic_labels(tmp_path):
    write_pair(tmp_path, "t10k", 3, 1, gz=False)
    p = tmp_path / "t10k-labels-idx1-ubyte"
    p.write_bytes(idx_bytes(0x00000901, (3,), bytes(3)))
    with pytest.raises(DataError) as ei:
        load_mnist(tmp_path)
    assert_one_line_error(ei, str(p), "0x00000901", "0x00000801")


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_payload(tmp_path, gz):
    write_pair(tmp_path, "t10k", 3, 1, gz=False)
    os.remove(tmp_path / "t10k-images-idx3-ubyte")
    bad = write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(IMG_MAGIC, (3, 28, 28), bytes(3 * 784 - 1)), gz)
    with pytest.raises(DataError) as ei:
        load_mnist(tmp_path)
    assert_one_line_error(ei, str(bad), "truncated", "2352", "2351")


def test_trailing_bytes(tmp_path):
    p = tmp_path / "x-idx1"
    p.write_bytes(idx_bytes(LBL_MAGIC, (3,), bytes(5)))
    with pytest.raises(DataError) as ei:
        read_idx(p, LBL_MAGIC)
    assert_one_line_error(ei, str(p), "2 unexpected trailing bytes")


@pytest.mark.parametrize("blob", [b"", b"\x00\x00", idx_bytes(IMG_MAGIC, (), b"") + b"\x00\x00\x00\x05"])
def test_truncated_header(tmp_path, blob):
    p = tmp_path / "x-idx3"
    p.write_bytes(blob)
    with pytest.raises(DataError) as ei:
        read_idx(p, IMG_MAGIC)
    assert_one_line_error(ei, str(p), "truncated IDX header")


def test_read_idx_ok(tmp_path):
    p = tmp_path / "x-idx3"
    data = np.arange(2 * 3 * 4, dtype=np.uint8)
    p.write_bytes(idx_bytes(IMG_MAGIC, (2, 3, 4), data.tobytes()))
    np.testing.assert_array_equal(read_idx(p, IMG_MAGIC), data.reshape(2, 3, 4))


def test_corrupt_gzip(tmp_path):
    write_pair(tmp_path, "t10k", 3, 1, gz=False)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    p = tmp_path / "t10k-labels-idx1-ubyte.gz"
    p.write_bytes(b"this is not gzip at all")
    with pytest.raises(DataError) as ei:
        load_mnist(tmp_path)
    assert_one_line_error(ei, str(p), "gzip")


def test_truncated_gzip_stream(tmp_path):
    write_pair(tmp_path, "t10k", 3, 1, gz=True)
    p = tmp_path / "t10k-images-idx3-ubyte.gz"
    blob = p.read_bytes()
    p.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError) as ei:
        load_mnist(tmp_path)
    assert_one_line_error(ei, str(p), "truncated gzip")


def test_missing_directory(tmp_path):
    with pytest.raises(DataError) as ei:
        load_mnist(tmp_path / "nope")
    assert_one_line_error(ei, str(tmp_path / "nope"), "not found")


def test_missing_test_file(tmp_path):
    write_pair(tmp_path, "train", 3, 1, gz=False)
    write_pair(tmp_path, "t10k", 3, 1, gz=False)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(DataError) as ei:
        load_mnist(tmp_path)
    assert_one_line_error(ei, "t10k-labels-idx1-ubyte", "not found")


def test_only_one_train_file_is_an_error_not_a_fallback(tmp_path):
    write_pair(tmp_path, "train", 3, 1, gz=False)
    write_pair(tmp_path, "t10k", 3, 1, gz=False)
    os.remove(tmp_path / "train-labels-idx1-ubyte")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError) as ei:
            load_mnist(tmp_path)
    assert_one_line_error(ei, str(tmp_path / "train-labels-idx1-ubyte"), "not found")


def test_count_mismatch(tmp_path):
    write_pair(tmp_path, "t10k", 5, 1, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(LBL_MAGIC, (4,), bytes(4)))
    with pytest.raises(DataError) as ei:
        load_mnist(tmp_path)
    assert_one_line_error(ei, "t10k-images-idx3-ubyte", "5 images", "4 labels")


def test_wrong_image_size(tmp_path):
    write_pair(tmp_path, "t10k", 2, 1, gz=False)
    p = tmp_path / "t10k-images-idx3-ubyte"
    p.write_bytes(idx_bytes(IMG_MAGIC, (2, 8, 8), bytes(128)))
    with pytest.raises(DataError) as ei:
        load_mnist(tmp_path)
    assert_one_line_error(ei, str(p), "28x28", "8x8")


def test_label_out_of_range(tmp_path):
    write_pair(tmp_path, "t10k", 3, 1, gz=False)
    p = tmp_path / "t10k-labels-idx1-ubyte"
    p.write_bytes(idx_bytes(LBL_MAGIC, (3,), bytes([1, 12, 3])))
    with pytest.raises(DataError) as ei:
        load_mnist(tmp_path)
    assert_one_line_error(ei, str(p), "12")


def test_real_mnist_t10k():
    if not (MNIST_T10K / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST t10k files not present at {MNIST_T10K}")
    with pytest.warns(UserWarning, match="first 8000 images for training, last 2000 for test"):
        split = load_mnist(MNIST_T10K)
    assert split.train.x.shape == (8000, 1, 28, 28)
    assert split.test.x.shape == (2000, 1, 28, 28)
    assert list(split.train.y[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert split.train.x.min() == 0.0 and split.train.x.max() == 1.0
    assert set(np.unique(split.train.y)) == set(range(10))
    assert set(np.unique(split.test.y)) == set(range(10))
    # every class is reasonably represented in both parts of the split
    assert np.bincount(split.train.y, minlength=10).min() > 600
    assert np.bincount(split.test.y, minlength=10).min() > 150


# ---------------------------------------------------------------- CIFAR-10


def cifar_batch(n: int, seed: int):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=n)]
    return data, labels


def write_cifar(root: Path, sizes=(3, 2, 4, 1, 2), n_test=3, protocol=pickle.HIGHEST_PROTOCOL, str_keys=False):
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, n in enumerate(list(sizes) + [n_test]):
        name = f"data_batch_{i + 1}" if i < len(sizes) else "test_batch"
        data, labels = cifar_batch(n, i)
        d = {"data": data, "labels": labels} if str_keys else {b"data": data, b"labels": labels, b"batch_label": b"x"}
        with open(root / name, "wb") as f:
            pickle.dump(d, f, protocol=protocol)
        out[name] = (data, labels)
    return out


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_parse(tmp_path, protocol):
    batches = write_cifar(tmp_path, protocol=protocol)
    split = load_cifar10(tmp_path)
    assert split.train.x.shape == (12, 3, 32, 32) and split.test.x.shape == (3, 3, 32, 32)
    assert split.train.x.dtype == np.float32 and split.train.y.dtype == np.int64
    data1, labels1 = batches["data_batch_1"]
    # channel-major rows: first 1024 bytes are the red plane, row-major
    np.testing.assert_array_equal(np.rint(split.train.x[0, 0] * 255).astype(np.uint8), data1[0, :1024].reshape(32, 32))
    np.testing.assert_array_equal(np.rint(split.train.x[0, 2] * 255).astype(np.uint8), data1[0, 2048:].reshape(32, 32))
    expected_y = sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert list(split.train.y) == expected_y
    assert list(split.test.y) == batches["test_batch"][1]
    assert split.name == "cifar10" and split.input_shape == (3, 32, 32)


def test_cifar10_str_keys_and_subdir(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py", str_keys=True)
    split = load_cifar10(tmp_path)
    assert len(split.train) == 12 and len(split.test) == 3


def test_cifar10_missing_batch(tmp_path):
    write_cifar(tmp_path)
    os.remove(tmp_path / "data_batch_3")
    with pytest.raises(DataError) as ei:
        load_cifar10(tmp_path)
    assert_one_line_error(ei, str(tmp_path / "data_batch_3"), "not found")


def test_cifar10_missing_dir(tmp_path):
    with pytest.raises(DataError) as ei:
        load_cifar10(tmp_path / "absent")
    assert_one_line_error(ei, str(tmp_path / "absent"), "not found")


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty"])
def test_cifar10_corrupt_pickle(tmp_path, kind):
    write_cifar(tmp_path)
    p = tmp_path / "test_batch"
    blob = p.read_bytes()
    p.write_bytes({"garbage": b"\x80\x04not a pickle at all", "truncated": blob[: len(blob) // 2], "empty": b""}[kind])
    with pytest.raises(DataError) as ei:
        load_cifar10(tmp_path)
    assert_one_line_error(ei, str(p), "corrupt")


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_cifar10_refuses_code_in_pickle(tmp_path):
    write_cifar(tmp_path)
    victim = tmp_path / "pwned"
    with open(tmp_path / "data_batch_2", "wb") as f:
        pickle.dump({b"data": _Evil(str(victim)), b"labels": []}, f)
    with pytest.raises(DataError) as ei:
        load_cifar10(tmp_path)
    assert_one_line_error(ei, "data_batch_2", "refusing")
    assert not victim.exists()


@pytest.mark.parametrize(
    "payload, fragment",
    [
        ({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}, "(N, 3072)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1, 2]}, "2 images but 3 labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "0..9"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "missing key b'labels'"),
        ({b"labels": [0]}, "missing key b'data'"),
        ([1, 2, 3], "expected a pickled dict"),
    ],
)
def test_cifar10_bad_contents(tmp_path, payload, fragment):
    write_cifar(tmp_path)
    p = tmp_path / "data_batch_4"
    with open(p, "wb") as f:
        pickle.dump(payload, f)
    with pytest.raises(DataError) as ei:
        load_cifar10(tmp_path)
    assert_one_line_error(ei, str(p), fragment)


# ---------------------------------------------------------------- digits


def test_digits_shapes_and_range():
    split = load_digits()
    assert len(split.train) == 1437 and len(split.test) == 360
    assert split.train.x.shape == (1437, 1, 8, 8) and split.train.x.dtype == np.float32
    assert split.train.y.dtype == np.int64
    x = np.concatenate([split.train.x, split.test.x])
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(x * 16, np.rint(x * 16))  # 0..16 mapped by /16
    assert split.num_classes == 10 and split.name == "digits"


def test_digits_split_deterministic_and_stratified():
    a, b, c = load_digits(seed=0), load_digits(seed=0), load_digits(seed=1)
    np.testing.assert_array_equal(a.train.x, b.train.x)
    np.testing.assert_array_equal(a.test.y, b.test.y)
    assert not np.array_equal(a.test.x, c.test.x)
    counts = np.bincount(a.test.y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # ~20% of ~180 per class
    full = np.bincount(np.concatenate([a.train.y, a.test.y]), minlength=10)
    assert full.sum() == 1797


def test_digits_test_fraction():
    split = load_digits(test_fraction=0.5)
    assert abs(len(split.test) - 899) <= 1
    with pytest.raises(DataError):
        load_digits(test_fraction=1.5)


# ---------------------------------------------------------------- dispatch and containers


def test_load_dataset_unknown_lists_choices():
    with pytest.raises(DataError) as ei:
        load_dataset("imagenet")
    msg = assert_one_line_error(ei, "imagenet")
    for name in DATASETS:
        assert name in msg
    assert set(DATASETS) == {"digits", "mnist", "cifar10"}


def test_load_dataset_dispatch(tmp_path):
    (tmp_path / "m").mkdir()
    write_pair(tmp_path / "m", "train", 3, 1, gz=True)
    write_pair(tmp_path / "m", "t10k", 2, 1, gz=True)
    assert load_dataset("mnist", tmp_path / "m").name == "mnist"
    write_cifar(tmp_path / "c")
    assert load_dataset("CIFAR10", str(tmp_path / "c")).name == "cifar10"
    d = load_dataset("digits", seed=3)
    np.testing.assert_array_equal(d.test.y, load_digits(seed=3).test.y)
    with pytest.raises(DataError) as ei:
        load_dataset("mnist")
    assert_one_line_error(ei, "root")


def test_dataset_validation():
    x = np.zeros((3, 1, 2, 2), np.float32)
    y = np.array([0, 1, 2], np.int64)
    ds = Dataset(x=x, y=y, name="t", num_classes=3)
    assert len(ds) == 3 and ds.input_shape == (1, 2, 2)
    sub = ds.subset([2, 0])
    assert list(sub.y) == [2, 0]
    with pytest.raises(DataError):
        Dataset(x=x.astype(np.float64), y=y, name="t", num_classes=3)
    with pytest.raises(DataError):
        Dataset(x=x, y=y[:2], name="t", num_classes=3)
    with pytest.raises(DataError):
        Dataset(x=x, y=y, name="t", num_classes=2)
    other = Dataset(x=np.zeros((1, 1, 3, 3), np.float32), y=np.zeros(1, np.int64), name="t", num_classes=3)
    with pytest.raises(DataError):
        DatasetSplit(train=ds, test=other)
