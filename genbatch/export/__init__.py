"""``genbatch export --to onnx``: a diffusers model traced to ONNX, and its parity check against torch.

May import: genbatch.backends and everything below them.
"""
