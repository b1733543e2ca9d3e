"""Data sets as standardized train / validation / test splits of flat feature vectors and integer labels.

``digits`` (scikit-learn's bundled 8×8 digits, no network) is the default.
``mnist`` and ``fashion_mnist`` are read from a local ``path``: either a
directory holding the four IDX files under their distribution names
(``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally
``.gz``) or an ``.npz`` file with ``x_train``, ``y_train``, ``x_test`` and
``y_test`` (the layout of Keras' ``mnist.npz``). Both MNIST files share one
format, so ``fashion_mnist`` differs only in name.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "Dataset",
    "load_dataset",
    "read_idx",
    "read_mnist",
]

DATASETS = ("digits", "mnist", "fashion_mnist")
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# IDX type codes (the third magic byte) and their big-endian dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class Dataset:
    """Float32 features ``[n, d]`` and int32 labels ``[n]`` for each split.

    Examples:
      The three splits of scikit-learn's digits (8×8 images, ten classes), standardized on the training
      split:

      >>> from jgd.experiment.train.data import load_dataset
      >>> data = load_dataset("digits")
      >>> print(data.name, data.num_classes, data.x_train.shape, data.x_val.shape, data.x_test.shape)
      digits 10 (1293, 64) (144, 64) (360, 64)
      >>> print(data.x_train.dtype, data.y_train.dtype)
      float32 int32
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def num_features(self) -> int:
        """Length of a feature vector."""
        return self.x_train.shape[1]


def read_idx(path: str | Path) -> np.ndarray:
    """Reads one IDX file (gzipped if its name ends in ``.gz``) into an array of its stored shape.

    Examples:
      An IDX file holds a magic number (the type and the number of dimensions), the dimensions, then the
      data:

      >>> import pathlib
      >>> import struct
      >>> import tempfile
      >>> from jgd.experiment.train.data import read_idx
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "t10k-labels-idx1-ubyte"
      >>> _ = path.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 3) + bytes([7, 2, 1]))
      >>> read_idx(path)
      array([7, 2, 1], dtype=uint8)
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: not a valid gzip file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: IDX header is truncated")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: IDX header promises shape {shape} ({expected} bytes), found {len(raw) - header}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape)


def _idx_path(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"data file not found: {directory / stem} (or {stem}.gz)")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        raise ValueError(f"{path}: not a valid .npz file") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not a valid .npz file (it holds a single array)")
    with archive:
        missing = [k for k in IDX_FILES if k not in archive.files]
        if missing:
            raise ValueError(f"{path}: no array {missing[0]!r} (it has {sorted(archive.files)})")
        try:
            return {k: archive[k] for k in IDX_FILES}
        except (OSError, ValueError, zlib.error, EOFError) as e:
            raise ValueError(f"{path}: an array of the .npz file is corrupt ({e})") from None


def read_mnist(path: str | Path) -> dict[str, np.ndarray]:
    """MNIST-format arrays ``x_train, y_train, x_test, y_test`` from an IDX directory or an ``.npz`` file.

    Examples:
      From an ``.npz`` holding the four arrays (a folder of the four IDX files works the same):

      >>> import pathlib
      >>> import tempfile
      >>> import numpy as np
      >>> from jgd.experiment.train.data import read_mnist
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "mnist.npz"
      >>> images, labels = np.zeros((6, 28, 28), np.uint8), np.arange(6, dtype=np.uint8)
      >>> np.savez(path, x_train=images, y_train=labels, x_test=images[:2], y_test=labels[:2])
      >>> print({name: array.shape for name, array in read_mnist(path).items()})
      {'x_train': (6, 28, 28), 'y_train': (6,), 'x_test': (2, 28, 28), 'y_test': (2,)}
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {path}")
    arrays = _read_npz(path) if path.is_file() else {k: read_idx(_idx_path(path, s)) for k, s in IDX_FILES.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if y.ndim != 1 or x.ndim < 2 or len(x) != len(y):
            raise ValueError(f"{path}: x_{split} has shape {x.shape} but y_{split} has shape {y.shape}")
    return arrays


def _labels(y: np.ndarray, source: str) -> np.ndarray:
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError(f"{source}: labels must be non-negative integers, got dtype {y.dtype} min {y.min()}")
    return y.astype(np.int32)


def load_dataset(
    name: str = "digits",
    path: str | Path | None = None,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
    standardize: bool = True,
    seed: int = 0,
) -> Dataset:
    """Loads ``name`` and splits it into stratified train / validation / test sets.

    For ``digits`` the test set is ``test_fraction`` of the data; the MNIST
    files bring their own test set. ``validation_fraction`` of the remaining
    training data is held out for validation. With ``standardize`` every
    feature is shifted and scaled to zero mean and unit variance on the
    training split (constant features are left centred); without it the
    pixel values are scaled into [0, 1].

    Args:
      name: one of ``jgd.experiment.train.data.DATASETS``.
      path: for MNIST and Fashion-MNIST, a directory of IDX files or an ``.npz`` file.
      validation_fraction: the share of the training data held out for validation.
      test_fraction: the share of ``digits`` held out for testing.
      standardize: whether to standardize the features, rather than scale the pixels into [0, 1].
      seed: fixes the splits.

    Examples:
      Stratified splits: 20 % of digits for testing, then 10 % of the rest for validation. Standardized
      features have zero mean on the training split; without standardizing, the pixels are scaled into [0,
      1]:

      >>> from jgd.experiment.train.data import load_dataset
      >>> data = load_dataset("digits", validation_fraction=0.1, test_fraction=0.2, seed=0)
      >>> print(len(data.x_train), len(data.x_val), len(data.x_test))
      1293 144 360
      >>> print(bool(abs(data.x_train.mean()) < 1e-6))
      True
      >>> raw = load_dataset("digits", standardize=False)
      >>> print(raw.x_train.min(), raw.x_train.max())
      0.0 1.0

      MNIST and Fashion-MNIST are read from a local path (``path=``): a folder of IDX files or an
      ``.npz``.
    """
    # scikit-learn loads with the first data set, not with this module: the config schema needs DATASETS alone.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if name == "digits":
        digits = load_digits()
        x, y = digits.data, _labels(digits.target, "digits")
        x, x_test, y, y_test = train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=seed)
        pixel_max = 16.0
    elif name in ("mnist", "fashion_mnist"):
        if path is None:
            raise ValueError(f"data.path is required for {name}: a directory of IDX files or an .npz file")
        arrays = read_mnist(path)
        x, x_test = (arrays[k].reshape(len(arrays[k]), -1) for k in ("x_train", "x_test"))
        y, y_test = _labels(arrays["y_train"], str(path)), _labels(arrays["y_test"], str(path))
        pixel_max = 255.0
    else:
        raise ValueError(f"data.name must be one of {', '.join(DATASETS)}, got {name!r}")
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=validation_fraction, stratify=y, random_state=seed
    )
    splits = [x_train, x_val, x_test]
    if standardize:
        scaler = StandardScaler().fit(x_train)
        splits = [scaler.transform(s) for s in splits]
    else:
        splits = [s / pixel_max for s in splits]
    x_train, x_val, x_test = (s.astype(np.float32) for s in splits)
    num_classes = int(max(y_train.max(), y_val.max(), y_test.max())) + 1
    return Dataset(name, x_train, y_train, x_val, y_val, x_test, y_test, num_classes)
