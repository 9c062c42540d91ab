"""CFMD-GAN (Lee, Han & Heo 2022): control-factor generator, U-Net discriminator, losses, training task."""
