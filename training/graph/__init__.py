"""Networks written as data: the allowed layers, their wiring, the check and costs, presets, the Keras builder."""
