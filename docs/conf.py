"""Sphinx configuration of gnpool's API reference (``make docs``)."""

from __future__ import annotations

import gnpool

project = "gnpool"
author = "The gnpool authors"
copyright = "2026, The gnpool authors"
release = gnpool.__version__
version = release

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]

# Google-style docstrings (Args:, Returns:, Raises:, Attributes:).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
# Signatures show the hints as written; the types themselves are not cross-linked.
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# Torch and PyG are imported for real (gnpool's kernels load at import); nothing is mocked.
html_theme = "alabaster"
exclude_patterns = ["_build"]
