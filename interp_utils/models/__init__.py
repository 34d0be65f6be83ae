"""Models the suite makes: the bundled model's training and evaluation script, and the GPT-2 stand-in the tests run."""
