"""Downstream benchmarks of a frozen or fine-tuned backbone: cached features, kNN, SVM, linear, ...

Each benchmark reads a backbone file (``results/backbones/{model}.pth``) or cached features
(``results/features/{model}/{dataset}_{split}.npz``) and writes
``results/benchmarks/{benchmark}/{model}/metrics.json`` (table column -> number, plus ``meta``).
"""
