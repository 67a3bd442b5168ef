"""Export: a saved model as an ONNX file, checked by ONNX Runtime on every export.

- ``graph.py``: the ONNX graph of a Model (the normalization, each layer, the softmax, the
  metadata);
- ``kinds.py``: each layer kind's ONNX nodes, found by the kind's type;
- ``check.py``: the ONNX checker, then ONNX Runtime against numpy-cnn on test images;
- ``onnx_file.py``: the ``export`` command's job, from the model file to the .onnx file.

Needs the packages ``onnx`` and ``onnxruntime`` (``pip install -e ".[export]"``).
"""
