"""The [model] backend choices, apart from edge.engines so that the config and the CLI's clients
(`phonescope capture`, `status`) start without loading numpy: on a kiosk that is seconds."""
BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")
