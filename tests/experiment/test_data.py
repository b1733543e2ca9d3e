"""Data sets: digits splits and scaling, MNIST in IDX (plain or gzipped) and .npz, and clear errors."""

import gzip

import numpy as np
import pytest

from jgd.experiment.train.data import IDX_FILES, load_dataset, read_idx, read_mnist


def test_digits_splits_and_standardization():
    d = load_dataset("digits", validation_fraction=0.1, test_fraction=0.2, seed=0)
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == 1797
    assert len(d.x_test) == 360 and len(d.x_val) == 144
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int32
    assert d.num_features == 64 and d.num_classes == 10
    varying = d.x_train.std(axis=0) > 0
    np.testing.assert_allclose(d.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(d.x_train.std(axis=0)[varying], 1, rtol=1e-4)
    # Stratified: every class in every split.
    assert all(set(np.unique(y)) == set(range(10)) for y in (d.y_train, d.y_val, d.y_test))


def test_digits_split_follows_the_seed():
    a, b, c = load_dataset(seed=0), load_dataset(seed=0), load_dataset(seed=1)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.y_train, c.y_train)


def test_unstandardized_pixels_are_in_unit_range():
    d = load_dataset(standardize=False)
    assert d.x_train.min() == 0 and d.x_train.max() == 1


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def _fake_mnist(rng, n):
    return rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8), np.arange(n, dtype=np.uint8) % 10


@pytest.fixture
def mnist_dir(tmp_path):
    rng = np.random.default_rng(0)
    (x_train, y_train), (x_test, y_test) = _fake_mnist(rng, 100), _fake_mnist(rng, 30)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    for i, (key, stem) in enumerate(IDX_FILES.items()):
        raw = _idx_bytes(arrays[key])
        if i % 2:  # half of them gzipped: both forms are read
            (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (tmp_path / stem).write_bytes(raw)
    return tmp_path, arrays


def test_read_idx_round_trip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(_idx_bytes(array))
    (tmp_path / "a.gz").write_bytes(gzip.compress(_idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_from_idx_directory(mnist_dir, name):
    path, arrays = mnist_dir
    d = load_dataset(name, path, validation_fraction=0.2)
    assert d.num_features == 784
    assert len(d.x_train) == 80 and len(d.x_val) == 20 and len(d.x_test) == 30
    np.testing.assert_array_equal(d.y_test, arrays["y_test"])


def test_mnist_from_npz(tmp_path, mnist_dir):
    _, arrays = mnist_dir
    np.savez(tmp_path / "mnist.npz", **arrays)
    d = load_dataset("mnist", tmp_path / "mnist.npz", standardize=False)
    assert d.x_test.shape == (30, 784) and d.x_test.max() <= 1
    np.testing.assert_allclose(d.x_test[0], arrays["x_test"][0].ravel() / 255, rtol=1e-6)


def test_missing_path_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dataset("mnist", tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"data\.path is required"):
        load_dataset("mnist")


def test_missing_idx_file_names_it(mnist_dir):
    path, _ = mnist_dir
    next(path.glob("t10k-labels*")).unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        read_mnist(path)


def test_malformed_files_are_named(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="bad: not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(_idx_bytes(np.zeros((2, 3)))[:-1])
    with pytest.raises(ValueError, match="short: IDX header promises shape"):
        read_idx(tmp_path / "short")
    (tmp_path / "x.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match=r"x\.gz: not a valid gzip file"):
        read_idx(tmp_path / "x.gz")


def test_npz_without_a_field_names_it(tmp_path):
    np.savez(tmp_path / "m.npz", x_train=np.zeros((2, 4)), y_train=np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match=r"m\.npz: no array 'x_test'"):
        read_mnist(tmp_path / "m.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"junk\.npz: not a valid \.npz file"):
        read_mnist(tmp_path / "junk.npz")


def test_mismatched_lengths_are_reported(tmp_path):
    np.savez(
        tmp_path / "m.npz",
        x_train=np.zeros((3, 4)),
        y_train=np.zeros(2, np.uint8),
        x_test=np.zeros((2, 4)),
        y_test=np.zeros(2, np.uint8),
    )
    with pytest.raises(ValueError, match="x_train has shape"):
        read_mnist(tmp_path / "m.npz")


def test_unknown_dataset():
    with pytest.raises(ValueError, match=r"data\.name must be one of"):
        load_dataset("cifar")
