"""The engine: the per-model worker thread (the only code that touches the device), the scheduler of long
work and the visualizations it steps, the dynamic batcher and batch sizing, the explainer that plans one
batch's shared passes, the records that travel on a model's queue, and where models are loaded.
"""
