"""speclm: teach a language model to read galaxy spectra, then let it talk about them.

Subpackages: speclm.tools (files, lines, cosmology, SDSS, redshift check), speclm.finetune
(preprocess, codec, datasets, runtime, trainer), speclm.agent (LangGraph), speclm.ui (Gradio),
speclm.evals (metrics, retention, scenarios, ablations, report).
"""
__version__ = "0.1.0"
