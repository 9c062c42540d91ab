"""The documented import path of the dataset contract: `from pipeline.manifest import load_sample`.

The code lives in `pipeline.dataset.manifest`; this module re-exports its public names so scripts
written against the contract keep working.
"""
from pipeline.dataset.manifest import (  # noqa: F401
    DATASET_ROOT, EXTRA, MANIFEST_SCHEMA, METHODS, REQUIRED, SPLITS, STOP_REASONS, ManifestError,
    load_sample, load_sharp, read_manifests, validate, write_manifests,
)
