"""Face motion-blur datasets from videos, and the face-deblurring models trained on them.

- `dataset/`: the data half (torch-free): videos -> landmarks -> windows -> FMR manifests;
- `models/`: the two deblurring models, one folder each, and inference;
- `train/`: the training machinery both models share; `eval/`: scoring on the test split;
- `metrics/`: image and face metrics; `sheets`: PNG contact sheets; `stage`: what every stage
  script needs (params, logging, JSON outputs); `deblur`: the command for your own photos.

The public data contract is `pipeline.manifest` (`read_manifests`, `load_sample`).
"""
__version__ = "0.1.0"
