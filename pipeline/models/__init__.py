"""The model half: the two face-deblurring models, each in one folder.

- `cfmd/`: CFMD-GAN (Lee, Han & Heo 2022): `generator`, `discriminator`, `deform_conv`, `losses`,
  and `task` (how one training step runs, for `pipeline.train.loop`);
- `chrysos/`: Chrysos, Favaro & Zafeiriou (2019): `hourglass`, `gan`, `losses`, `task`;
- `device`: cpu/cuda choice, bf16 autocast and channels_last on GPU, optional torch.compile;
- `inference`: `load_model(path)` -> a trained model with one `restore(blurry, u)` call.

Networks and losses need only torch; `task` modules also use the training machinery in
`pipeline.train`, which nothing in evaluation or inference imports.
"""
