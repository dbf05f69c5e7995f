"""embedtrain's benchmarks and studies: ``python -m benchmarks --list`` names them.

Shared helpers live in :mod:`benchmarks.common`; every result file carries its provenance.
"""
