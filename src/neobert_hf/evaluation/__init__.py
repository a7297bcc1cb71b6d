"""Evaluation of NeoBERT models. Submodules are imported where used (`neobert_hf.evaluation.pppl`: pseudo-perplexity
of a masked language model on long documents), so importing this package stays light."""
