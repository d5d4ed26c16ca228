"""Models: loading, the one architecture reader, the organism, GGUF and injection.

1. Architecture (`architecture`): the model types each stage supports, a model's shape,
   and the one reader of its Hugging Face config.
2. Loading (`loading`): a hub id, a local folder, a GGUF package or a trained organism
   resolved, checked before any job, and loaded with its tokenizer.
3. GGUF (`gguf_convert`): a GGUF file converted once into a float32 folder.
4. Organism (`organism`): a tiny GPT-NeoX trained on the stand-in corpus with planted
   duplicated documents, so which text it memorized is known.
5. Injection (`injection`): planted documents trained into a pretrained model, optionally
   into chosen heads and MLPs only, so where the memory can live is known too.
6. Shapes (`shapes`): small random-weight model folders of the hub families' shapes.
"""
