"""Sphinx configuration of jgd's documentation site.

Build it with ``python -m sphinx -W -b html docs docs/_build/html`` (the ``docs`` extra installs what it
needs); ``tests/docs/test_site.py`` runs the same build in the default suite.

- Sphinx's autodoc and autosummary write one page per public name from its docstring, napoleon reads the
  docstrings' Google-style sections (``Args:``, ``Examples:``); the API pages are reStructuredText, since
  autosummary generates pages only from the ``.. autosummary::`` directives it finds in ``.rst`` files.
- MyST-NB reads the Markdown pages and the notebooks in ``notebooks/`` (``docs/notebooks`` is a link to
  that folder). The notebooks are rendered with the outputs stored in them and not executed here: the
  suite executes them (``tests/experiment/test_notebooks.py``).
- furo is the theme: maintained, light, readable API pages, and nothing for it to fetch at build or view
  time (the site works offline).
- ``nitpicky``: every cross-reference that does not resolve is a warning, and ``-W`` makes a warning an
  error. References into other projects (jax, numpy, flax, optax, the standard library) are not linked
  (there is no network at build time for intersphinx) and are listed in ``nitpick_ignore_regex``.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's jgd, whatever else is installed
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jgd  # noqa: E402

project = "jgd"
author = "the jgd authors"
copyright = "the jgd authors, Apache-2.0"
release = version = jgd.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "myst_nb",
    "sphinx_copybutton",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "api/generated/*.md", "**.ipynb_checkpoints", "notebooks/README*"]
templates_path = ["_templates"]
root_doc = "index"

# API pages: one per public name, generated into api/generated/ at each build (not stored).
autosummary_generate = True
autosummary_generate_overwrite = True
autosummary_imported_members = False
# Types beside each argument's description; the signature stays short (names and defaults).
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": False}
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# Markdown and notebooks.
myst_enable_extensions = ["colon_fence", "deflist", "attrs_inline"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # rendered with their stored outputs; the suite executes them
nb_merge_streams = True

# Broken cross-references fail the build; references outside jgd are not links.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(jax|jaxlib|jnp|np|numpy|optax|flax|nn|nnx|orbax|ocp|yaml|matplotlib|plt|sklearn)(\..*)?"),
    (r"py:.*", r"(typing|collections|collections\.abc|pathlib|dataclasses|enum|types|argparse|signal)\..*"),
    (r"py:.*", r"(Any|Callable|Sequence|Mapping|Iterable|Iterator|NamedTuple|Literal|Optional|Union|Path|TypeVar)"),
    (r"py:.*", r"(int|float|str|bool|bytes|dict|list|tuple|set|type|object|None|complex|slice|Ellipsis)"),
    (r"py:.*", r"(Array|ArrayLike|PyTree|DTypeLike|Carry|Settings|Distribution|Sharding|NamedSharding|Mesh)"),
    (r"py:.*", r"(PartitionSpec|KeyPath|Params|Updates|Transform|Schedule|Scalar|Hyper.*)"),
    (r"py:.*", r"rich(\..*)?"),
    (r"py:.*", r"jgd\.types\..*"),  # the type aliases; each argument that takes one says what it holds
    (r"py:class", r".*\[.*"),  # a piece of a subscripted string annotation, ``dict[str, Any]``
    # Internal types that appear in signatures; the pages that use them say what they hold.
    (r"py:class", r"(jgd\.state\.)?Origin|(jgd\.second_order\.quasi_newton\.)?L?BFGSMemory"),
    (r"py:class", r"jgd\.experiment\.train\.batching\.Carry|jgd\.base\.Label"),
]

html_theme = "furo"
html_title = f"jgd {release}"
html_static_path = ["_static"]
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
