"""edgenas: co-optimise neural architecture and INT8 quantization for a named edge device.

Data flows one way: space -> search -> quantize -> compile -> measure -> latency feedback.
Heavy libraries (torch, tvm) are imported lazily inside the stage modules so that the CLI starts
instantly.
"""

__version__ = "0.1.0"
