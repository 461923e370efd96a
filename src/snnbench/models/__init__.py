"""Torch models: the conversion study's MLP and CNN, and the multimodal suite's DNN / SNN family."""
