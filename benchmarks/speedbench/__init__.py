"""Code of the speed benchmarks (``benchmarks/speed.py``, ``benchmarks/speed_peers.py``): research, not package.

* :mod:`speedbench.measure`: the FMD, inference and training timings, and the command line.
* :mod:`speedbench.models`: the models and inference variants timed.
* :mod:`speedbench.report`: the Markdown tables.

The scripts in ``benchmarks/`` import it as ``speedbench`` (Python puts the script's folder first on the path).
"""
