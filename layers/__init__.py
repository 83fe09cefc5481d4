"""The Lambda layers' builder (`layers/build.py`), importable as `layers.build`."""
