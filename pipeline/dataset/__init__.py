"""The data half: face videos -> blurry/sharp samples -> FMR-ordered parquet manifests.

Torch-free (tested), so building a dataset needs no deep-learning stack. In pipeline order:

- `video`: finding, probing and streaming videos and image sequences (`VideoSource`);
- `ingest`: the catalog of usable videos, their split, and the rejects with reasons;
- `pts`, `dlib_models`, `landmarks`: 68 points per frame (`.pts` annotations, else dlib);
- `crop`: the face crop shared by every method (`CropParams`, `crop_resize`);
- `averaging`: the running mean of frames in stored values or linear light;
- `fixed`, `vla`: which frames form each window (fixed length; variable length);
- `render`, `framestore`, `samples`, `pngio`: windows -> blurry PNGs, stored sharp regions, rows;
- `run`: one averaging method over every video, with per-video isolation and statistics;
- `parallel`: per-video joblib parallelism (loky, threading, Dask);
- `fmr`, `manifest`: facial-motion reordering, u, and the public manifests (`load_sample`);
- `counts`, `report`: metrics, plots and contact sheets of a built dataset.
"""
