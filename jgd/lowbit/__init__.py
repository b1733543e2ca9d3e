"""Low-bit optimizer state: slots in 8 or 4 bits (:func:`jgd.quantized`) or in bfloat16 written with stochastic
rounding (:func:`jgd.stochastic`), both tracking float32."""

from jgd.lowbit.array import QuantizedArray
from jgd.lowbit.formats import Quantized, Stochastic, dequantize, quantized, stochastic

__all__ = ["Quantized", "QuantizedArray", "Stochastic", "dequantize", "quantized", "stochastic"]
