"""Figures and an HTML report from a results store (Locatello et al. 2019 and the seed poster).

``analysis.load.load_results(dir)`` reads the store into one tidy DataFrame,
``analysis.load.wide(df)`` pivots it to one row per job × representation, and
``analysis.figures.draw_all(dir)`` draws every figure and writes ``index.html``.
Importing the package does not import torch (only latent traversals load a model).
"""
