"""cifar-exp: configurable CIFAR-10 image classification experiments."""

__version__ = "0.1.0"
