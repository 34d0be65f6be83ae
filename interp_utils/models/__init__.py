"""Models the suite makes: the bundled model's training and evaluation script, the GPT-2 stand-in the tests run,
the export of a TransformerLens GPT-2 to Hugging Face (``hf_export``) and the nnsight versions of the methods with
their models (``scaling``, lesson 08)."""
