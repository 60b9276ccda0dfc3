"""ORL (Xie et al. 2021): object-level pretraining from selective-search boxes and kNN images."""
