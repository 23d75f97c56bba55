"""File-based data sources (CIFAR archives, image folders) and their tensor cache files.

Each source module registers itself in `cifar_exp.data.DATASETS`.
"""
