"""Face motion-blur datasets from videos, and the face-deblurring models trained on them.

The public data contract is `pipeline.manifest` (`read_manifests`, `load_sample`).
"""
__version__ = "0.1.0"
