"""Integrations with other libraries (sentence-transformers, mteb, GLUE metrics, ...).

Nothing is imported here: each submodule imports its optional package when it is used, so `import neobert_hf` and
`import neobert_hf.integrations` stay light.
"""
