"""embedtrain: word-embedding training with interchangeable output layers ("heads")."""

__version__ = "0.1.0"
