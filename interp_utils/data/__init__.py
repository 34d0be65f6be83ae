"""Data: IOI prompts and batches (Wang et al.'s templates), the bundled model's generated corpus, facts, token streams
and activation buffers."""
