"""Training machinery shared by the training stages (`stages/train_*.py`).

One job per module:

- `config`: a params.yaml section -> typed settings (unknown keys are errors);
- `data`: manifest rows -> (blurry, sharp frame, u) items, and the seeded epoch sampler;
- `augment`: random scale + crop (+ optional flip) of a batch on the device, with kornia;
- `device`: cpu/cuda choice, bf16 autocast and channels_last on GPU, optional torch.compile;
- `ddp`: torchrun-aware process group and gradient averaging (one process without torchrun);
- `checkpoint`: atomic save / resume of everything a run needs to continue exactly;
- `log`: the CSV loss log that `dvc plots` reads, and the progress bar;
- `loop`: `fit`, the step loop that ties the above together for any `TrainTask`;
- `optim`: Adam with per-epoch lr decay, one update step, gradients on/off;
- `cfmd`, `chrysos`: the model-specific tasks (networks, optimisers, one step) and their sheets;
- `sheet`: PNG contact sheets; `artifacts`: final weights and run metadata;
- `presets`: `python -m pipeline.train.presets presets/x.yaml` prints `-S key=value` overrides.
"""
