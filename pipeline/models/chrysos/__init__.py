"""Chrysos, Favaro & Zafeiriou (2019): stacked hourglass, two-pathway cGAN, losses, training tasks."""
