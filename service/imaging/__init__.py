"""Images in and out, in numpy and Pillow only (the CPU pool never runs torch): decoding posted images into the
model's input and the overlay picture, and encoding maps, overlays, colormaps and base64 for the wire.
"""
