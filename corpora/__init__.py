"""The corpus shipped with embedtrain, installed as package data: WordNet 3.0 glosses
(1.8M words), with its copyright notice."""
